"""How it is shown: Altair charts and the live chart, markdown and HTML (escaped), the workbench's
view model, the marimo notebook, the Jupyter panel and the offline reports."""
