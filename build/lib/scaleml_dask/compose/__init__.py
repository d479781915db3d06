"""Composition of table transformers by column: ``ColumnTransformer``, ``make_column_transformer``,
``make_column_selector`` (by name pattern or kind), with scikit-learn's names and semantics, fitted in one pass."""

from ._column_transformer import ColumnTransformer, make_column_selector, make_column_transformer

__all__ = ["ColumnTransformer", "make_column_selector", "make_column_transformer"]
