"""The report's explore section: the page part with the explore data embedded (computed by `make
figures`: figures/explore.json and figures/explore/templates_<i>.js, linfool.experiments.explore) and
explore.js inline. Computes nothing.
"""

import json
from pathlib import Path

SCRIPT = Path(__file__).with_name("explore.js")


def section(data) -> str:
    """HTML: the explore data (a dict whose 'files' are URLs relative to the page) and the script."""
    embedded = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return (
        f"<h2 id='explore'>Explore: drag alpha and watch the probabilities</h2>"
        f"<script type='application/json' id='explore-data'>{embedded}</script>"
        f"<div id='explore-app'><noscript>This section needs JavaScript.</noscript></div>"
        f"<script>{SCRIPT.read_text()}</script>"
    )
