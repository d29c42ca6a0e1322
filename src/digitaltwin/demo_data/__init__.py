"""Data shipped with the package for the demo: the UCI steel-plant year (see its SOURCE.md and NOTICE)."""

from importlib.resources import files
from pathlib import Path

#: The steel plant's 2018 readings (CC BY 4.0, doi:10.24432/C52G8C), inside the installed package.
STEEL_CSV = Path(str(files(__name__) / "steel_industry" / "Steel_industry_data.csv"))
