"""Issue 18 part B, "field rules": every field of every config dataclass has exactly one declarative rule,
and the one checker words every failure the same way (key, bad value, what is allowed)."""

import dataclasses
import importlib.util
import re

import pytest

from varinv import config as config_mod
from varinv.config import (AnyOf, Checked, DataConfig, Each, Interval, Odd, Options, Rule, Text, TrainConfig,
                           field_rules)
from varinv.errors import ConfigError
from varinv.methods import available, config_class

SECTIONS = [DataConfig, TrainConfig] + [config_class(m) for m in available()]


def _ids(classes):
    return [c.__name__ for c in classes]


@pytest.mark.parametrize("cls", SECTIONS, ids=_ids(SECTIONS))
def test_every_field_has_exactly_one_rule(cls):
    fields = [f.name for f in dataclasses.fields(cls)]
    rules = field_rules(cls)
    assert issubclass(cls, Checked)
    assert sorted(rules) == sorted(fields), (
        f"missing: {sorted(set(fields) - set(rules))}, rules for no field: {sorted(set(rules) - set(fields))}")
    assert all(isinstance(r, Rule) for r in rules.values())
    for klass in cls.__mro__:  # a class declares rules only for fields that exist
        assert set(vars(klass).get("RULES", {})) <= set(fields), klass


@pytest.mark.parametrize("cls", SECTIONS, ids=_ids(SECTIONS))
def test_defaults_pass_their_rules(cls):
    cls().validate()


@pytest.mark.parametrize("name", config_mod.shipped())
def test_shipped_configs_pass(name):
    config_mod.load(config_mod.shipped()[name])


def _first_bad(rule):
    """A value of the right type that ``rule`` rejects, or None if it allows every value tried."""
    for v in (-1, 0, 1, 2, 4, -1.0, 0.0, 0.5, 1.0, 1.5, "", " ", "nosuch", [1.0, 0.5], [0.5, 0.5, 0.5]):
        if not rule.ok(v):
            return v
    return None


@pytest.mark.parametrize("cls", SECTIONS, ids=_ids(SECTIONS))
def test_one_message_shape_naming_key_value_and_allowed(cls):
    section = cls.SECTION
    for name, rule in field_rules(cls).items():
        bad = _first_bad(rule)
        if bad is None:
            continue
        obj = cls()
        object.__setattr__(obj, name, bad)
        with pytest.raises(ConfigError) as e:
            obj.validate()
        msg = str(e.value)
        shown = list(bad) if isinstance(bad, tuple) else bad
        assert msg.startswith(f"config value {section}.{name} = {shown!r} is invalid: expected "), msg
        assert msg.endswith(rule.expected())


def test_rule_wording():
    assert Interval(int, 1, None).expected() == "an integer >= 1"
    assert Interval(int, 1, None, symbol="K").expected() == "an integer K >= 1"
    assert Interval(float, 0, 1, closed="right").expected() == "a number in (0, 1]"
    assert Interval(float, 0, None, closed="neither").expected() == "a positive number"
    assert Interval(float, 1, None, closed="neither", symbol="r").expected() == "a number r > 1"
    assert Options(("own", "mean", "other")).expected() == "'own', 'mean' or 'other'"
    assert AnyOf(Options((0,), note="auto"), Interval(int, 8, None)).expected() == "0 (auto) or an integer >= 8"
    assert Each(Interval(float, 0, 1, closed="left"), 2).expected() == "two numbers in [0, 1)"
    assert Interval(int, 0, None, note="0 = off").expected() == "an integer >= 0 (0 = off)"
    assert field_rules(TrainConfig)["compile"].expected() == "true or false"


def test_rule_semantics():
    assert Interval(int, 1, None).ok(1) and not Interval(int, 1, None).ok(0)
    assert not Interval(int, 0, None).ok(True) and not Interval(int, 0, None).ok(1.0)
    assert Interval(float, 0, 1, closed="right").ok(1.0) and not Interval(float, 0, 1, closed="right").ok(0.0)
    assert Interval(float, 0, 1, closed="left").ok(0) and not Interval(float, 0, 1, closed="left").ok(1)
    assert Options(("a", "b")).ok("a") and not Options(("a",)).ok("c") and not Options((0,)).ok(False)
    assert Odd().ok(3) and not Odd().ok(4)
    assert Text(r"cpu|cuda(:\d+)?", text="x").ok("cuda:1") and not Text(r"cpu", text="x").ok("tpu")


def test_cross_field_relation_still_checked():
    from varinv.methods.v3 import V3Config

    with pytest.raises(ConfigError, match="tilt_knee"):
        V3Config(tilt_knee_min=0.6, tilt_knee_max=0.4).validate()


def test_examples_of_kept_messages():
    def err(raw):
        with pytest.raises(ConfigError) as e:
            config_mod.from_dict(raw)
        return str(e.value)

    assert err({"train": {"betas": [1.0, 0.5]}}) == (
        "config value train.betas = [1.0, 0.5] is invalid: expected two numbers in [0, 1), e.g. [0.9, 0.999]")
    assert err({"model": {"n_atoms": 0}}).endswith("expected an integer K >= 1")
    assert err({"model": {"n_channels": 4}}).endswith("expected 0 (from the fragment shape) or an integer >= 8")
    assert err({"train": {"seed": -1}}).endswith("expected an integer >= 0")


def test_config_does_not_import_methods():
    """config.py is the lower layer: method modules import it, never the reverse (no config <-> methods cycle)."""
    src = (importlib.util.find_spec("varinv.config").origin)
    text = open(src, encoding="utf-8").read()
    assert not re.search(r"^\s*(from varinv\.methods|import varinv\.methods)", text, re.M)
