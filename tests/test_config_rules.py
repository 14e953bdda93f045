"""Issue 17 item 13: every field of every family's config has a declared range or choices, and
any value outside them is refused in one line naming the field, before anything is built."""
import math

import pytest

from aigc_jax import config_rules, families
from aigc_jax.config import ConfigError, flatten, load_config, set_field, to_dict
from tests.conftest import config_path

CONFIGS = ["gpt_char.py", "markov_lm.py", "seq2seq.py", "gan_2d.py", "dcgan.py", "vae.py", "realnvp.py",
           "realnvp.py:moons", "gpt3.py:small", "codex.py:finetune"]
CANDIDATES = (-10**6, -2, -1, 0, 1, 2, 10**6)


def declared_rules(config) -> dict:
    return {**config_rules.SHARED_RULES, **families.task_module(config.task).FIELD_RULES}


def bad_values(rule, current) -> list:
    """Values of the field's own type that the rule refuses (none for free text or a flag)."""
    if isinstance(current, bool):
        return []
    if isinstance(current, str):
        return ["bogus"] if rule.problem("bogus") else []
    kind = type(current)
    found = [kind(v) for v in CANDIDATES if rule.problem(kind(v))][:1]
    if kind is float:
        found += [v for v in (0.5, math.nan, math.inf) if rule.problem(v)][:2]
    return found


@pytest.mark.parametrize("spec", CONFIGS)
def test_every_field_is_declared_and_every_value_outside_its_rule_is_refused_in_one_line(spec):
    config = load_config(config_path(spec))
    families.check_config(config)  # the defaults pass
    present = flatten(to_dict(config))
    rules = declared_rules(config)
    assert sorted(set(present) - set(rules)) == [], "fields without a declared rule"
    refused = 0
    for field, current in present.items():
        for bad in bad_values(rules[field], current):
            broken = config.copy_and_resolve_references()
            set_field(broken, field, bad)
            with pytest.raises(ConfigError) as error:
                families.check_config(broken)
            message = str(error.value)
            assert message.startswith(f"config field {field}=") and "\n" not in message, message
            refused += 1
    assert refused > 40


@pytest.mark.parametrize("spec", ["gpt_char.py:tiny", "seq2seq.py:tiny", "gan_2d.py:tiny", "vae.py:tiny",
                                  "realnvp.py:tiny"])
def test_a_bad_value_is_refused_before_the_workdir_is_made(spec, tmp_path):
    config = load_config(config_path(spec), ["train.batch_size=0"])
    with pytest.raises(ConfigError, match=r"^config field train.batch_size=0 is not allowed: expected an integer >= 1$"):
        families.build_task(config, str(tmp_path / "never"))
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("overrides, message", [
    (["model.embed_dim=33"], "config field model.embed_dim=33 is not divisible by model.num_heads=2"),
    (["model.num_heads=4", "model.num_kv_heads=3"],
     "config field model.num_heads=4 is not divisible by model.num_kv_heads=3"),
    (["train.grad_accum_steps=3"], "config field train.batch_size=4 is not divisible by train.grad_accum_steps=3"),
])
def test_the_lm_refuses_fields_that_do_not_divide(overrides, message):
    config = load_config(config_path("gpt_char.py:tiny"), overrides)
    with pytest.raises(ConfigError, match=message):
        families.check_config(config)


def test_a_rule_names_what_is_allowed():
    assert config_rules.MESH_AXIS.problem(0) == "one of -1 or an integer >= 1"
    assert config_rules.MESH_AXIS.problem(-1) is None and config_rules.MESH_AXIS.problem(4) is None
    assert config_rules.OPEN_FRACTION.problem(1.0) == "a finite number > 0 and < 1"
    assert config_rules.TEXT.problem(3) == "a string" and config_rules.TEXT.problem("") is None
