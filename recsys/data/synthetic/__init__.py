"""A deterministic synthetic twin of the RetailRocket Kaggle dataset.

The real files cannot be downloaded everywhere the project runs (CI, demos, machines without
a Kaggle account), so :func:`generate_twin` writes the same four files, in exactly the Kaggle
format, from a seed: ``events.csv``, ``item_properties_part1.csv``,
``item_properties_part2.csv`` and ``category_tree.csv``. The same seed and scale give
byte-identical files. ``docs/synthetic_twin.md`` lists which statistics of the real data the
twin reproduces and which it does not; :func:`measure_raw_statistics` measures them on any
folder of RetailRocket files, the twin's or the real ones.

The twin is not noise. It plants the latent structure that makes the real data worth
modelling:

- a category tree (roots, up to 6 levels); items sit mostly on leaves and have a price and a
  heavy-tailed base popularity that drifts week by week (trends up or down, new items are
  launched with a boost, some items die and become unavailable);
- visitors have a heavy-tailed number of events (most have one, a few bots have thousands),
  favourite categories (often siblings in the tree) and a price level, kept over time;
- a session focuses on one category, mostly a favourite one, and views items of it, chosen
  by their popularity that week and by how well their price fits the visitor; visitors
  re-view items they just saw;
- add-to-carts follow views of the same item, transactions follow add-to-carts; buyers are
  the more active visitors, baskets hold about 1.27 items, unavailable items are bought
  less often;
- item properties are weekly snapshots in the Kaggle change-log form: an (item, property)
  row at the first snapshot the item appears in and again at each snapshot where the value
  changed; ``categoryid`` flips for about 5 % of the items, ``available`` for about 16 %,
  the price (``790``) for about 30 %.

Everything is vectorised with numpy (loops only run over weeks, rounds or chunks); item
properties are written in chunks, so the full scale stays within a few hundred megabytes
beyond the rows themselves.

The package follows the generator's steps: :mod:`.scales` (sizes), :mod:`.tree`,
:mod:`.items`, :mod:`.samplers`, :mod:`.events`, :mod:`.properties`, :mod:`.writing`, tied
together by :mod:`.generator`; :mod:`.measuring` measures any folder of files;
:mod:`.constants` holds the facts of the real data and the calibrated behaviour model.
Besides the twin, :data:`SHAPES` holds other shops in the same format (``dense``, ``sparse``)
and any size can be grown or shrunk by a factor (:func:`resolve_shape`).
"""

from recsys.data.synthetic.constants import END_MS, N_PROPERTIES, SNAPSHOT_TIMESTAMPS_MS, START_MS
from recsys.data.synthetic.generator import generate_twin, planted_items
from recsys.data.synthetic.measuring import measure_raw_statistics
from recsys.data.synthetic.scales import (
    FULL,
    SCALES,
    SHAPES,
    Behaviour,
    TwinScale,
    TwinSummary,
    resolve_scale,
    resolve_shape,
)

__all__ = [
    "END_MS",
    "FULL",
    "N_PROPERTIES",
    "SCALES",
    "SHAPES",
    "SNAPSHOT_TIMESTAMPS_MS",
    "START_MS",
    "Behaviour",
    "TwinScale",
    "TwinSummary",
    "generate_twin",
    "measure_raw_statistics",
    "planted_items",
    "resolve_scale",
    "resolve_shape",
]
