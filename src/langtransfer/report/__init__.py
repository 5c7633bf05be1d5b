"""The report: tables, heatmaps, the cross-model and combined-representation sections,
the axes' plots."""
