"""Reusable widgets: the Heatmap of a Grid, plotext plots, the sortable ResultTable."""
