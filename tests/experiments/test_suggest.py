"""The one "did you mean" helper that config keys, group options, choices and model names share."""

from experiments.suggest import closest, unknown_setting


def test_closest_is_the_nearest_option_or_none() -> None:
    assert closest("lorra", ["lora", "bitfit", "full_ft"]) == "lora"
    assert closest("xyz", ["lora", "bitfit"]) is None
    assert closest("lr", iter(["lr", "epochs"])) == "lr"  # any iterable


def test_unknown_setting_names_the_near_miss_or_lists_what_is_known() -> None:
    assert unknown_setting("train.lrr", "train.lr") == (
        "train.lrr is not a setting of this run (did you mean train.lr?); remove it or fix its name"
    )
    assert "(known: name, r)" in unknown_setting("method.rank", None, ["name", "r"])
    assert "(no setting has a similar name)" in unknown_setting("zzz", None)
