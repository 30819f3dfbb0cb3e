"""training/portrait_eval.py's summaries of the appearance reader and the liveliness measures."""

from __future__ import annotations

from training.portrait_eval import summarise_appearance, summarise_liveliness


def _appearance(right: dict[str, bool], neutral: str, compounds: dict[str, bool],
                spoken: dict[str, int] | None = None) -> dict:
    emotions = {name: {"read_as": name if ok else "neutral", "right": ok} for name, ok in right.items()}
    for name, hits in (spoken or {}).items():
        emotions[name]["speaking"] = {"frames": [10, 20, 30], "right": hits}
    return {
        "emotions": emotions,
        "emotions_read": sum(right.values()), "emotions_known": len(right),
        "neutral": {"read_as": neutral},
        "compounds": {key: {"both_in_top2": ok} for key, ok in compounds.items()},
        "compounds_both_in_top2": sum(compounds.values()),
    }


def test_the_appearance_summary_counts_per_emotion_neutral_and_compounds():
    results = [
        {"appearance": _appearance({"happiness": True, "fear": False}, "neutral", {"happiness+surprise@1": True},
                                   {"happiness": 3, "fear": 1})},
        {"appearance": _appearance({"happiness": True, "fear": True}, "happiness", {"happiness+surprise@1": False},
                                   {"happiness": 2, "fear": 0})},
        {"appearance": {"note": "weights missing"}},  # not read: left out
    ]
    summary = summarise_appearance(results)
    assert summary["emotions_read"] == "3/4"
    assert summary["by_emotion"] == {"happiness": "2/2", "fear": "1/2"}
    assert summary["neutral_read_neutral"] == "1/2" and summary["neutral_read_as"] == {"happiness": 1, "neutral": 1}
    assert summary["compounds_both_in_top2"] == "1/2" and summary["by_compound"] == {"happiness+surprise@1": "1/2"}
    assert summary["speaking"] == {"emotions_read": "6/12", "by_emotion": {"happiness": "5/6", "fear": "1/6"}}
    assert summarise_appearance([{"appearance": {"note": "weights missing"}}]) is None
    silent_only = [{"appearance": _appearance({"happiness": True}, "neutral", {})}]
    assert summarise_appearance(silent_only)["speaking"] is None


def test_the_liveliness_summary_is_null_where_nothing_was_measured():
    lively = {"blinks": {"count": 2, "per_minute": 20.0, "mean_duration_ms": 120.0},
              "head_motion": {"yaw_range_deg": 3.0, "pitch_range_deg": 1.0, "roll_range_deg": 0.5,
                              "translation_range_px": 4.0},
              "gaze": {"horizontal_range": 0.1, "vertical_range": 0.05, "horizontal_range_deg": 13.0,
                       "vertical_range_deg": 6.6}}
    quiet = {"blinks": {"count": 0, "per_minute": 0.0, "mean_duration_ms": None}, "head_motion": None, "gaze": None}
    summary = summarise_liveliness([{"liveliness": lively}, {"liveliness": quiet}])
    assert summary["blinks_per_minute_mean"] == 10.0 and summary["head_yaw_range_deg_max"] == 3.0
    assert summary["gaze_horizontal_range_deg_max"] == 13.0
    empty = summarise_liveliness([{"liveliness": {"blinks": None, "head_motion": None, "gaze": None}}])
    assert all(value is None for value in empty.values())
