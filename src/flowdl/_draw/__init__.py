"""Drawing: DOT text and SVG straight from the builder's record, and the summary table."""
