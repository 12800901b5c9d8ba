"""``python -m pipelines.var.make_book PORTFOLIO.toml --out book.csv|book.h5``: a positions
file from a portfolio (its generated ``[book]`` or its ``[[positions]]``)."""

from __future__ import annotations

from .book import portfolio_columns, write_book
from .portfolio import PortfolioError, load_portfolio


def main(argv: list[str] | None = None) -> int:
    """Write the book a portfolio generates (``[book] generate``) or lists, as a file."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m pipelines.var.make_book",
                                 description=main.__doc__)
    ap.add_argument("portfolio")
    ap.add_argument("--out", required=True, help="book.csv or book.h5")
    args = ap.parse_args(argv)
    try:
        pf = load_portfolio(args.portfolio)
    except PortfolioError as e:
        print(f"error: {e}")
        return 2
    write_book(args.out, portfolio_columns(pf))
    print(f"{args.out}: {pf.n_positions:,} positions")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
