"""Small, hand-checked RetailRocket raw files for loader and preparation tests."""

from __future__ import annotations

from pathlib import Path

EVENTS_HEADER = "timestamp,visitorid,event,itemid,transactionid"
PROPERTIES_HEADER = "timestamp,itemid,property,value"
TREE_HEADER = "categoryid,parentid"

# 2015-06-02 05:02:12.117 UTC and onwards.
EVENTS = [
    "1433221332117,257597,view,355908,",
    "1433224214164,992329,view,248676,",
    "1433221999827,111016,view,318965,",
    "1433221955914,483717,view,253185,",
    "1433221337106,951259,addtocart,367447,",
    "1433223291897,972639,transaction,22556,4000",
    "1433221332117,257597,view,355908,",
]
PROPERTIES_PART1 = [
    "1435460400000,460429,categoryid,1338",
    "1441508400000,206783,888,1116713 960601 n277.200",
    "1439089200000,395014,400,n552.000 639502 n720.000 424566",
]
PROPERTIES_PART2 = [
    "1439089200000,59481,790,n15360.000",
    "1431226800000,156781,917,828513",
    "1436065200000,285026,available,0",
]
TREE = ["1016,213", "809,169", "570,9", "1691,885", "536,1691", "231,", "542,378"]


def write_raw_files(
    folder: Path,
    events: list[str] | None = None,
    part1: list[str] | None = None,
    part2: list[str] | None = None,
    tree: list[str] | None = None,
) -> Path:
    """Write the four Kaggle files into ``folder`` (default content unless given) and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    contents = {
        "events.csv": [EVENTS_HEADER, *(EVENTS if events is None else events)],
        "item_properties_part1.csv": [PROPERTIES_HEADER, *(PROPERTIES_PART1 if part1 is None else part1)],
        "item_properties_part2.csv": [PROPERTIES_HEADER, *(PROPERTIES_PART2 if part2 is None else part2)],
        "category_tree.csv": [TREE_HEADER, *(TREE if tree is None else tree)],
    }
    for name, lines in contents.items():
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder
