from __future__ import annotations

import importlib
from pathlib import Path

import yaml

from features.store.definitions import render_feature_store_yaml
from rluf.settings import Settings


def test_the_generated_offline_store_type_is_an_importable_feast_plugin(tmp_path: Path) -> None:
    # Feast imports offline_store.type by its dotted path and wants <Class>Config beside the class.
    config = yaml.safe_load(render_feature_store_yaml(Settings(data_home=tmp_path)))
    module_name, class_name = config["offline_store"]["type"].rsplit(".", 1)
    module = importlib.import_module(module_name)
    store_class = getattr(module, class_name)
    assert store_class.__name__ == "BundledDuckDBOfflineStore"
    assert getattr(module, f"{class_name}Config")().type == config["offline_store"]["type"]
    assert config["offline_store"]["type"] == module.STORE_TYPE
