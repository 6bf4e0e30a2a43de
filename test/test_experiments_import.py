"""Every experiment harness imports, and the ones with their own command line print their help
(a harness moved or renamed without its imports is caught here, not in the next experiment)."""

import importlib
import pkgutil

import pytest

import usn_robust_keypoints.experiments as experiments

MODULES = sorted(m.name for m in pkgutil.iter_modules(experiments.__path__))


def test_there_are_harnesses():
    assert {"real_pruning", "real_frontier", "bab_bench", "pruning"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_harness_imports_and_prints_help(name, capsys):
    mod = importlib.import_module(f"usn_robust_keypoints.experiments.{name}")
    main = getattr(mod, "main", None)
    if callable(main):
        with pytest.raises(SystemExit) as e:
            main(["--help"])
        assert e.value.code == 0 and "usage" in capsys.readouterr().out
