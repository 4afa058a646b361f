"""The learning comparison: `marimo edit notebooks/learning.py`. The notebook itself is nbkit/notebook.py,
shared by the three comparisons; this file embeds it with its comparison's name."""

import marimo

app = marimo.App(width="medium", app_title="nbkit: learning", css_file="comparison.css")


@app.cell
def _():
    from nbkit.notebook import app as comparison_notebook  # embedded by another cell, so its widgets react
    return (comparison_notebook,)


@app.cell
async def _(comparison_notebook):
    (await comparison_notebook.embed(defs={"comparison_name": "learning"})).output
    return


if __name__ == "__main__":
    app.run()
