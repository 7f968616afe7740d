"""The discharge study (Fig. 5) without ROS: the run classification of ``analyse`` on
hand-made trajectories, the core-env trajectory, and the core backend end to end."""

import dataclasses
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from lgtc_policy.agent import MissionError
from lgtc_policy.env import EnvConfig
from lgtc_policy.mission.discharge import (
    analyse,
    core_trajectory,
    event_victim,
    select_alone,
    summarise,
    variant,
)
from lgtc_policy.mission.discharge_study import discharge_study_core, main, reanalyse
from lgtc_policy.mission.scenario import (
    core_rollout,
    env_serving,
    make_env,
    scenario_from_config,
)
from lgtc_policy.model.lgtc import LGTCNet, NetConfig
from sim_bridge.config import load_config
from sim_bridge.recording import read_run
from sim_bridge.sim import Simulator, robot_serving_alone

REPO = Path(__file__).resolve().parents[4]
SHIPPED = Path(importlib.util.find_spec("lgtc_policy").origin).parent / (
    "checkpoints/lgtc_ippo_n10_m4.pt"
)
HZ = 20.0
# consumers of launch/discharge.yaml: c1 (-1.2, 1.0), c2 (1.2, 1.0), c3 (0.0, -0.3), R = 0.3 m
C1, C2, C3 = (-1.2, 1.0), (1.2, 1.0), (0.0, -0.3)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """B = 1, N = 5 rollouts: a second thread only contends on the 2-core CI machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def base_mapping(t_event=50.0):
    data = yaml.safe_load((REPO / "launch" / "discharge.yaml").read_text())
    data["policy"] = {"checkpoint": None}
    for ev in data["events"]:
        ev["t"] = t_event
    return data


def hover(t_end=60.0):
    """(times, positions) of the 5 drones airborne at 0.5 m: cf1, cf2 at c1, cf3 at c3,
    cf4, cf5 at c2 (eq. 3's allocation); callers move robots from there."""
    times = np.arange(0.0, t_end + 1e-9, 1 / HZ)
    spots = [
        (C1[0] - 0.1, C1[1]),
        (C1[0] + 0.1, C1[1]),
        C3,
        (C2[0] - 0.1, C2[1]),
        (C2[0] + 0.1, C2[1]),
    ]
    pos = np.zeros((len(times), 5, 3))
    pos[:, :, :2] = np.array(spots)[None]
    pos[:, :, 2] = 0.5
    return times, pos


def land(times, pos, i, t):
    """Robot ``i`` descends from ``t`` at 0.4 m/s (the simulator's landing speed)."""
    k = times >= t
    pos[k, i, 2] = np.maximum(0.5 - 0.4 * (times[k] - t), 0.0)


# ---------------------------------------------------------------- analyse, by hand


def test_another_robot_entering_at_52s_recovers_in_2s():
    cfg = load_config(base_mapping())
    times, pos = hover()
    land(times, pos, 2, 50.0)
    pos[times >= 52.0, 3, :2] = (0.05, -0.3)  # cf4 leaves c2 and is inside c3 from 52 s
    res = analyse(cfg, times, pos, window=40.0)
    assert res["outcome"] == "re-covered" and res["success"] is True
    assert res["consumer"] == "c3" and res["abandoned"] is True and res["landed"] is True
    assert res["recover_s"] == pytest.approx(2.0, abs=1e-9)
    assert res["recovered_by"] == "cf4" and res["recovered_from"] == "c2"
    assert res["covered_after_pct"] == pytest.approx(100 * (1 - 40 / 201))  # 50.0 .. 51.95 not


def test_late_recover_fails_the_window_and_nobody_fails_too():
    cfg = load_config(base_mapping())
    times, pos = hover(100.0)
    land(times, pos, 2, 50.0)
    pos[times >= 91.0, 3, :2] = (0.0, -0.1)  # 41 s after the event, 0.2 m from c3's centre
    res = analyse(cfg, times, pos, window=40.0)
    assert res["outcome"] == "not re-covered" and res["success"] is False
    assert res["recover_s"] == pytest.approx(41.0)
    assert analyse(cfg, times, pos, window=45.0)["success"] is True
    times, pos = hover(100.0)
    land(times, pos, 2, 50.0)
    res = analyse(cfg, times, pos)
    assert res["outcome"] == "not re-covered" and math.isnan(res["recover_s"])
    assert res["recovered_by"] is None and res["covered_after_pct"] == 0.0


def test_a_robot_already_inside_means_nothing_was_abandoned():
    cfg = load_config(base_mapping())
    times, pos = hover()
    land(times, pos, 2, 50.0)
    pos[:, 1, :2] = (0.2, -0.3)  # cf2 also inside c3 all along
    res = analyse(cfg, times, pos)
    assert res["outcome"] == "not abandoned" and res["abandoned"] is False
    assert res["success"] is False and "nothing to re-cover" in res["reason"]
    assert res["covered_after_pct"] == 100.0


def test_victim_outside_every_area_and_rim_and_height_rules():
    cfg = load_config(base_mapping())
    times, pos = hover()
    land(times, pos, 2, 50.0)
    pos[:, 2, :2] = (0.0, -0.3 - 0.301)  # 1 mm outside c3's radius
    res = analyse(cfg, times, pos)
    assert res["outcome"] == "victim in no area" and res["success"] is False
    pos[:, 2, :2] = (0.0, -0.3 - 0.2999)  # just inside: the floor distance decides
    assert analyse(cfg, times, pos)["consumer"] == "c3"
    pos[times < 50.0, 2, 2] = 0.2  # below half the take-off height: not airborne
    assert analyse(cfg, times, pos)["outcome"] == "victim in no area"


def test_incomplete_allocation_at_the_event_is_not_a_reallocation():
    """Everyone crowding c1 (one at c3): c2 held nobody, so c3 filling up again later is not
    the paper's reallocation."""
    cfg = load_config(base_mapping())
    times, pos = hover()
    pos[:, 3, :2] = (C1[0], C1[1] + 0.15)
    pos[:, 4, :2] = (C1[0], C1[1] - 0.15)
    land(times, pos, 2, 50.0)
    pos[times >= 52.0, 0, :2] = C3
    res = analyse(cfg, times, pos)
    assert res["outcome"] == "incomplete allocation" and res["success"] is False
    assert res["uncovered_at_event"] == ["c2"] and "c2 held no robot" in res["reason"]


def test_moving_the_gap_is_not_a_re_cover_until_every_consumer_is_held_again():
    """cf1 alone at c1 flies to c3 at 52 s: c1 is empty until cf2 (from c2) arrives at 60 s,
    so the allocation is complete again, and the re-cover counted, only from 60 s."""
    cfg = load_config(base_mapping())
    times, pos = hover()
    pos[:, 1, :2] = (C2[0], C2[1] + 0.15)  # c1: cf1 alone; c2: cf2, cf4, cf5
    land(times, pos, 2, 50.0)
    pos[times >= 52.0, 0, :2] = C3
    pos[times >= 60.0, 1, :2] = C1
    res = analyse(cfg, times, pos)
    assert res["outcome"] == "re-covered" and res["uncovered_at_event"] == []
    assert res["recover_s"] == pytest.approx(10.0, abs=1e-9) and res["success"] is True
    assert res["recovered_by"] == "cf1" and res["recovered_from"] == "c1"
    times, pos = hover()
    pos[:, 1, :2] = (C2[0], C2[1] + 0.15)
    land(times, pos, 2, 50.0)
    pos[times >= 52.0, 0, :2] = C3  # and nobody refills c1
    res = analyse(cfg, times, pos)
    assert res["outcome"] == "not re-covered" and math.isnan(res["recover_s"])
    assert res["covered_after_pct"] == pytest.approx(100 * (1 - 40 / 201))  # c3 held: gap moved


def test_victim_that_does_not_land_and_run_that_ends_early():
    cfg = load_config(base_mapping())
    times, pos = hover()
    pos[times >= 52.0, 3, :2] = (0.05, -0.3)
    res = analyse(cfg, times, pos)
    assert res["outcome"] == "not landed" and res["success"] is False
    short = times < 49.0
    res = analyse(cfg, times[short], pos[short])
    assert res["outcome"] == "no event" and res["success"] is False


def test_bad_trajectory_and_config_without_event_are_errors():
    cfg = load_config(base_mapping())
    times, pos = hover()
    with pytest.raises(MissionError, match=r"expected \(T, 5, 3\)"):
        analyse(cfg, times, pos[:, :4])
    with pytest.raises(MissionError, match=r"expected \(T, 5, 3\)"):
        analyse(cfg, times[:-1], pos)
    data = base_mapping()
    data["events"] = [e for e in data["events"] if e["type"] != "discharge"]
    with pytest.raises(MissionError, match="no discharge event"):
        analyse(load_config(data), times, pos)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    t_enter=st.floats(45.0, 100.0),
    window=st.floats(1.0, 60.0),
)
def test_success_is_exactly_an_abandoned_consumer_recovered_in_the_window(seed, t_enter, window):
    """Wherever the pairs at c1 / c2 hover, success <=> landed, abandoned, re-covered <=
    window (the mover leaves a partner behind, so every consumer stays covered)."""
    cfg = load_config(base_mapping())
    rng = np.random.default_rng(seed)
    times, pos = hover(100.0)
    pos[:, [0, 1, 3, 4], :2] += rng.uniform(-0.1, 0.1, (1, 4, 2))  # anywhere inside c1 / c2
    land(times, pos, 2, 50.0)
    j = int(rng.integers(0, 4))
    pos[times >= t_enter, [0, 1, 3, 4][j], :2] = (0.1, -0.35)
    res = analyse(cfg, times, pos, window)
    assert res["success"] == (res["outcome"] == "re-covered")
    if res["success"]:
        assert res["abandoned"] and res["landed"] and 0 <= res["recover_s"] <= window
    if res.get("abandoned"):  # the mover was outside c3 at the event: it re-covers c3
        assert t_enter >= 50.0 - 1 / HZ
        entered = times[times >= t_enter]
        if entered.size:
            assert res["recover_s"] == pytest.approx(entered[0] - 50.0, abs=1e-9)
        else:
            assert math.isnan(res["recover_s"])
    else:
        assert res["outcome"] == "not abandoned" and t_enter < 50.0


# ---------------------------------------------------------------- the core env's trajectory


def test_core_trajectory_samples_at_20hz_with_the_simulators_heights():
    cfg = load_config(base_mapping(t_event=3.0))
    torch.manual_seed(0)
    net = LGTCNet(NetConfig(agent_item_dim=6, consumer_item_dim=6, out_dim=2))
    env_config = dataclasses.asdict(EnvConfig())
    times, pos, clusters, events = core_trajectory(cfg, net, env_config, duration=5.0)
    assert events == [
        {"t": 3.0, "type": "discharge", "robot": "cf3"},
        {"t": 3.0, "type": "deactivate", "robot": "cf3"},
    ]
    assert times.shape == (101,) and pos.shape == (101, 5, 3)
    np.testing.assert_allclose(times[:3], [0.0, 0.05, 0.1])
    np.testing.assert_allclose(pos[0, :, :2], [r.pose[:2] for r in cfg.robots], atol=1e-6)
    # take-off at 0.5 m/s to 0.5 m, held still meanwhile (hold_ticks = 21)
    np.testing.assert_allclose(pos[10, :, 2], 0.25)
    np.testing.assert_allclose(pos[20:60, :, 2], 0.5)
    np.testing.assert_allclose(pos[21, :, :2], pos[0, :, :2], atol=1e-6)
    # cf3 lands from tick 60 (t = 3 s) at 0.4 m/s and stays where it was
    np.testing.assert_allclose(pos[62, 2, 2], 0.5 - 0.4 * 0.1)
    assert pos[-1, 2, 2] == 0.0 and (pos[-1, [0, 1, 3, 4], 2] == 0.5).all()
    np.testing.assert_allclose(pos[61:, 2, :2] - pos[61, 2, :2], 0.0, atol=1e-7)
    # cluster rows (t, robot, cluster) from the first policy tick on, every robot each tick
    # while active: the landed cf3 attends nothing from tick 60
    assert clusters.shape == ((100 - 21) * 5 - (100 - 60), 3)
    assert clusters[0, 0] == pytest.approx(1.05)
    assert clusters[clusters[:, 1] == 2, 0].max() == pytest.approx(2.95)
    assert set(np.unique(clusters[:, 2])) <= {0.0, 1.0, 2.0}
    # the planar part is core_rollout's, with and without the CBF
    sc = scenario_from_config(cfg)
    ref = core_rollout(net, sc, env_config, 100, cbf=True)
    np.testing.assert_allclose(pos[..., :2], sc.frame.to_world(ref.pos))
    _, raw, _, _ = core_trajectory(cfg, net, env_config, duration=5.0, cbf=False)
    ref = core_rollout(net, sc, env_config, 100, cbf=False)
    np.testing.assert_allclose(raw[..., :2], sc.frame.to_world(ref.pos))
    with pytest.raises(MissionError, match="at least one control tick"):
        core_trajectory(cfg, net, env_config, duration=0.0)


# ---------------------------------------------------------------- the core backend end to end


@pytest.fixture(scope="module")
def short_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("discharge_core")
    seen = []
    summary = discharge_study_core(
        SHIPPED,
        base_mapping(t_event=6.0),
        runs=2,
        first_seed=3,
        after=4.0,
        window=3.0,
        out=out,
        progress=seen.append,
    )
    return out, summary, seen


def test_core_backend_runs_the_seeded_variants_end_to_end(short_study):
    out, summary, seen = short_study
    assert summary["backend"] == "core" and summary["runs"] == 2 and len(seen) == 2
    assert summary["controller"] == "policy" and summary["cbf"] is True
    assert [r["seed"] for r in summary["results"]] == [3, 4]
    assert summary["successes"] == sum(r["outcome"] == "re-covered" for r in seen)
    assert sum(summary["outcomes"].values()) == 2
    for r in summary["results"]:
        assert r["victim"] == "cf3" and r["landed"] is True and r["sim_s"] == 10.0
        assert r["min_separation_margin_m"] >= -1e-6  # the CBF keeps Ds
        run_dir = out / f"seed{r['seed']}"
        d = read_run(run_dir / "run.mcap", load_config(run_dir / "swarm.yaml"))
        # the same jittered start as the ROS study's run of this seed
        want = variant(base_mapping(6.0), r["seed"], 0.1, None)["robots"]
        np.testing.assert_allclose(d.positions[0, :, :2], [w["pose"][:2] for w in want], atol=1e-6)
    again = reanalyse(out, window=3.0, backend="core")
    assert [a["outcome"] for a in again["results"]] == [r["outcome"] for r in seen]


def test_core_backend_cli_writes_the_summary_and_rejects_bad_input(tmp_path, capsys):
    config = tmp_path / "discharge.yaml"
    config.write_text(yaml.safe_dump(base_mapping(t_event=2.0), sort_keys=False))
    argv = ["--backend", "core", "--config", str(config), "--runs", "1", "--after", "1"]
    assert main([*argv, "--checkpoint", str(SHIPPED), "--out", str(tmp_path / "o")]) == 0

    def strict(text):  # NaN / Infinity are not JSON: a strict parser (jq, JS) refuses them
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in {text[:80]}"))

    summary = strict((tmp_path / "o" / "discharge.json").read_text())
    assert summary["backend"] == "core" and summary["runs"] == 1
    (run,) = summary["results"]
    out = capsys.readouterr().out
    assert "[core] re-covered within 40 s in" in out
    assert strict(next(line for line in out.splitlines() if line.startswith("{"))) == run
    # no checkpoint in the config and none given; a corrupted file; a missing config
    assert main([*argv, "--out", str(tmp_path / "p")]) == 2
    assert "policy.checkpoint is null" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main([*argv, "--checkpoint", str(bad), "--out", str(tmp_path / "q")]) == 2
    assert "bad.pt" in capsys.readouterr().err
    none = ["--config", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "r")]
    assert main(["--backend", "core", *none]) == 2
    assert "none.yaml" in capsys.readouterr().err
    assert main(["--reanalyse", "--out", str(tmp_path / "empty")]) == 2
    assert "no seed*/run.mcap" in capsys.readouterr().err
    for opt, value in (("--runs", "0"), ("--window", "-1"), ("--jitter", "nan"), ("--after", "0")):
        assert main([*argv, opt, value]) == 2
        assert f"error: {opt} = " in capsys.readouterr().err


def test_a_study_never_replaces_an_earlier_one_silently(tmp_path, capsys):
    """A second study into the same --out overwrote the first's runs (and a shorter one left
    old seed folders that --reanalyse mixed in): it is refused, one line, unless --overwrite,
    which removes that study's files and nothing else."""
    config = tmp_path / "discharge.yaml"
    config.write_text(yaml.safe_dump(base_mapping(t_event=2.0), sort_keys=False))
    out = tmp_path / "o"
    argv = ["--backend", "core", "--config", str(config), "--after", "1", "--out", str(out)]
    argv += ["--checkpoint", str(SHIPPED)]
    assert main([*argv, "--runs", "2"]) == 0
    first = (out / "discharge.json").read_text()
    (out / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert main([*argv, "--runs", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds a study (2 seed folders, discharge.json)" in err[0]
    assert (out / "discharge.json").read_text() == first and (out / "seed1").is_dir()
    assert main([*argv, "--runs", "1", "--overwrite"]) == 0
    assert sorted(d.name for d in out.iterdir()) == ["discharge.json", "notes.txt", "seed0"]
    assert main(["--reanalyse", "--backend", "core", "--out", str(out)]) == 0
    assert json.loads((out / "discharge.json").read_text())["runs"] == 1
    (tmp_path / "file").write_text("")
    assert main([*argv[:-4], "--out", str(tmp_path / "file"), "--runs", "1"]) == 2
    assert "is a file" in capsys.readouterr().err


def test_a_flight_without_end_is_refused_before_any_run(tmp_path, capsys):
    """--after 1e300 or an event at t = 1e300 s was an OverflowError traceback in the core
    env (and a ROS run without end); --runs 100000000 was years of runs."""
    config = tmp_path / "discharge.yaml"
    config.write_text(yaml.safe_dump(base_mapping(t_event=2.0), sort_keys=False))
    late = tmp_path / "late.yaml"
    late.write_text(yaml.safe_dump(base_mapping(t_event=1e300), sort_keys=False))
    for backend in ("core", "ros"):
        argv = ["--backend", backend, "--config", str(config), "--out", str(tmp_path / "o")]
        for opt, value, words in (
            ("--after", "1e300", "error: --after = 1e+300: must be > 0 s and <= 3600 s"),
            ("--runs", "100000000", "error: --runs = 100000000: must be from 1 to 1000"),
        ):
            assert main([*argv, opt, value]) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert err == [words], err
        argv[3] = str(late)
        assert main([*argv, "--runs", "1"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "discharge event at t = 1e+300 s plus --after 45 s" in err[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("d", "d is a folder; give an image file name such as"),  # was d.png beside it, exit 0
        ("fig.txt", "ends '.txt', not an image type"),
        ("fig", "has no suffix"),
        ("f/fig.png", "cannot be written: "),
        ("", "is empty"),
    ],
)
def test_figure_that_cannot_be_an_image_file_is_refused_before_any_run(
    tmp_path, capsys, name, words
):
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("a file")
    argv = ["--backend", "core", "--config", str(tmp_path / "none.yaml"), "--runs", "1"]
    figure = str(tmp_path / name) if name else ""
    assert main([*argv, "--figure", figure, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --figure ") and words in err[0], err
    assert not (tmp_path / "o").exists() and not (tmp_path / "d.png").exists()


def test_expert_yardstick_reallocates_as_in_fig5():
    """The scenario and the analysis are sound: with eq. 3's allocation cf3 serves c3 alone,
    and after it lands a drone of another subteam moves over (no checkpoint needed)."""
    summary = discharge_study_core(
        None, base_mapping(t_event=20.0), runs=1, after=10.0, controller="expert"
    )
    (r,) = summary["results"]
    assert summary["controller"] == "expert" and summary["checkpoint"] is None
    assert r["outcome"] == "re-covered" and r["consumer"] == "c3" and r["abandoned"] is True
    assert r["recovered_from"] in ("c1", "c2") and 0.0 < r["recover_s"] < 10.0
    assert r["min_separation_margin_m"] >= -1e-6
    with pytest.raises(MissionError, match="controller 'oracle'"):
        discharge_study_core(None, base_mapping(), runs=1, controller="oracle")
    # the ros backend flies the policy through the cbf_filter nodes
    assert main(["--controller", "expert", "--runs", "1"]) == 2
    assert main(["--no-cbf", "--runs", "1"]) == 2


def test_summary_tells_subteam_re_covers_from_spares():
    """Fig. 5 is a drone of another subteam moving over; a drone that held no area at the
    event (a spare) also re-covers, and the summary keeps the two apart."""
    runs = [
        {"outcome": "re-covered", "success": True, "abandoned": True, "recovered_from": "c2"},
        {"outcome": "re-covered", "success": True, "abandoned": True, "recovered_from": None},
        {"outcome": "re-covered", "success": True, "abandoned": True, "recovered_from": None},
        {"outcome": "not re-covered", "success": False, "abandoned": True},
        {"outcome": "not abandoned", "success": False, "abandoned": False},
    ]
    s = summarise(runs, "core", None, 40.0)
    assert (s["successes"], s["successes_from_subteam"], s["abandoned"]) == (3, 1, 4)
    assert s["outcomes"] == {"re-covered": 3, "not re-covered": 1, "not abandoned": 1}


def test_a_deeply_nested_study_config_is_one_problem_not_a_recursion(tmp_path):
    """The study parsed the file with PyYAML's recursive composer before validating it: a
    fuzzed file nested 100000 deep was a RecursionError traceback. The bounded loader goes
    first."""
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(MissionError, match="nest deeper than 50 levels"):
        discharge_study_core(config=deep, runs=1, out=tmp_path / "out")


# ---------------------------------------------------------------- --victim alone (select)


def alone_mapping(spots, t_event=2.0):
    """discharge.yaml with the drones starting below ``spots`` and its discharge + land turned
    into ``select: alone`` at ``t_event``."""
    data = select_alone(base_mapping(t_event))
    for r, (x, y) in zip(data["robots"], spots, strict=True):
        r["pose"] = [x, y, 0.0, 0.0]
    return data


#: cf1, cf2 in c1; cf3, cf4 in c2; cf5 in c3 alone.
PAIRS_AND_ONE = [(-1.25, 1.0), (-1.15, 1.0), (1.15, 1.0), (1.25, 1.0), (0.0, -0.3)]


def test_select_alone_rewrites_the_victims_discharge_and_land_only():
    data = base_mapping(50.0)
    data["events"].append({"t": 60.0, "type": "land", "robot": "cf3"})
    data["events"].append({"t": 50.0, "type": "land", "robot": "cf1"})
    out = select_alone(data)
    assert out["events"][:2] == [
        {"t": 50.0, "type": "discharge", "select": "alone", "resource": "battery", "amount": 0.0},
        {"t": 50.0, "type": "land", "select": "alone"},
    ]
    assert out["events"][2:] == data["events"][2:]  # another t, another robot: as written
    assert data["events"][0]["robot"] == "cf3"  # the input is not modified
    cfg = load_config(out)
    assert [e.select for e in cfg.events] == ["alone", "alone", None, None]


@pytest.mark.parametrize(
    "serving, want",
    [
        ([0, 0, 1, 1, 2], 4),
        ([0, 0, 1, 1, -1], None),
        ([2, 0, 0, 1, 1], 0),
        ([-1, -1, -1], None),
        ([1, 0, 1, 2, 0], 3),
        ([], None),
    ],
)
def test_robot_serving_alone_by_hand(serving, want):
    assert robot_serving_alone(np.array(serving, dtype=np.int64)) == want


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-1, 4), max_size=12))
def test_robot_serving_alone_is_the_lowest_sole_occupant(serving):
    pick = robot_serving_alone(np.array(serving, dtype=np.int64))
    sole = [i for i, m in enumerate(serving) if m >= 0 and serving.count(m) == 1]
    assert pick == (sole[0] if sole else None)


def _hovering_sim(mapping, until):
    """The simulator of ``mapping`` with every drone taken off, stepped to ``until`` [s]
    (no commands: they hover where they took off)."""
    sim = Simulator(load_config(mapping))
    for name in sim.names:
        sim.takeoff(name)
    fired = []
    while sim.t < until - 1e-9:
        fired += sim.step()
    return sim, fired


def test_the_simulator_discharges_and_lands_the_robot_serving_alone():
    sim, fired = _hovering_sim(alone_mapping(PAIRS_AND_ONE), 2.5)
    assert [(e["type"], e["robot"], e["select"]) for e in fired] == [
        ("discharge", "cf5", "alone"),
        ("land", "cf5", "alone"),
    ]
    assert fired[0]["t"] == pytest.approx(2.0)
    k = sim.cfg.resource_index("battery")
    assert sim.supply[4, k] == 0.0 and (sim.supply[:4, k] == 1.0).all()
    assert sim.names[4] == "cf5" and sim.pos[4, 2] < 0.5 and (sim.pos[:4, 2] == 0.5).all()
    # nobody alone (cf5 outside every area): the events do nothing and say so
    spots = PAIRS_AND_ONE[:4] + [(0.0, -1.5)]
    sim, fired = _hovering_sim(alone_mapping(spots), 2.5)
    assert [(e["type"], e["robot"], e.get("skipped")) for e in fired] == [
        ("discharge", None, "no robot serves a consumer alone"),
        ("land", None, "no robot serves a consumer alone"),
    ]
    assert (sim.supply[:, k] == 1.0).all() and (sim.pos[:, 2] == 0.5).all()


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([C1, C2, C3, (0.0, -1.5)]), st.floats(0.0, 0.4), st.floats(0, 7)),
        min_size=5,
        max_size=5,
    )
)
def test_the_core_env_picks_what_the_simulator_picks(draws):
    """``env_serving`` (normalised frame, active agents) is the simulator's ``serving`` (world
    frame, flying robots), so both backends discharge the same robot."""
    spots = [(c[0] + r * math.cos(a), c[1] + r * math.sin(a)) for c, r, a in draws]
    xy = np.array(spots)
    gap = np.linalg.norm(xy[:, None] - xy[None], axis=-1) + 9.0 * np.eye(5)
    assume(gap.min() > 0.11)  # the config refuses drones that overlap at start
    cfg = load_config(alone_mapping(spots))
    cp = np.array([c.position for c in cfg.consumers])
    d = np.linalg.norm(xy[:, None] - cp[None], axis=-1)
    assume(np.abs(d - 0.3).min() > 1e-6)  # not on a rim (float rounding of the two frames)
    sim, _ = _hovering_sim(alone_mapping(spots), 1.5)
    sc = scenario_from_config(cfg)
    env = make_env(sc, dataclasses.asdict(EnvConfig()), 10)
    np.testing.assert_array_equal(env_serving(env), sim.serving)
    want = robot_serving_alone(sim.serving)
    _, fired = _hovering_sim(alone_mapping(spots), 2.5)
    assert fired[0]["robot"] == (None if want is None else cfg.robots[want].name)


def test_analyse_takes_the_victim_from_the_event_record():
    cfg = load_config(alone_mapping(PAIRS_AND_ONE, t_event=50.0))
    times, pos = hover()
    land(times, pos, 2, 50.0)
    pos[times >= 52.0, 0, :2] = (0.05, -0.3)  # cf1 leaves c1 to cf2 and re-covers c3
    rec = [{"t": 50.0, "type": "discharge", "robot": "cf3", "select": "alone"}]
    res = analyse(cfg, times, pos, 40.0, rec)
    assert res["victim"] == "cf3" and res["outcome"] == "re-covered"
    assert res["recover_s"] == pytest.approx(2.0) and res["recovered_from"] == "c1"
    assert event_victim(cfg, rec) == "cf3"
    for records in (
        None,
        [],
        [{"t": 50.0, "type": "discharge", "robot": None}],
        [{"t": 50.0, "type": "discharge", "robot": "cf9"}],
    ):
        res = analyse(cfg, times, pos, 40.0, records)
        assert res["outcome"] == "nobody alone" and res["success"] is False
    # a named event ignores the records
    named = load_config(base_mapping(50.0))
    assert analyse(named, times, pos, 40.0, rec)["victim"] == "cf3"
    assert event_victim(named, [{"type": "discharge", "robot": "cf1"}]) == "cf3"


def test_core_study_with_victim_alone_records_and_reanalyses_the_pick(tmp_path):
    summary = discharge_study_core(
        None,
        base_mapping(t_event=12.0),
        runs=2,
        after=3.0,
        window=2.0,
        controller="greedy",
        victim="alone",
        out=tmp_path,
    )
    assert summary["victim"] == "alone"
    for r in summary["results"]:
        run_dir = tmp_path / f"seed{r['seed']}"
        cfg = load_config(run_dir / "swarm.yaml")
        assert [e.select for e in cfg.events] == ["alone", "alone"]
        run = read_run(run_dir / "run.mcap", cfg)
        assert [e["type"] for e in run.events] == ["discharge", "deactivate"]
        assert run.events[0]["robot"] == run.events[1]["robot"] == r["victim"]
        assert r["victim"] is not None and r["outcome"] != "nobody alone"
        # the victim served its consumer alone at the event, and it landed
        assert r["abandoned"] is True and r["landed"] is True
    again = reanalyse(tmp_path, window=2.0, backend="core")
    assert [a["victim"] for a in again["results"]] == [r["victim"] for r in summary["results"]]
    with pytest.raises(MissionError, match="victim 'lonely'"):
        discharge_study_core(None, base_mapping(), runs=1, controller="greedy", victim="lonely")


def test_checkpoint_option_takes_a_package_path_or_a_path_from_the_working_directory(
    tmp_path, monkeypatch
):
    """``lgtc discharge --checkpoint lgtc_policy:checkpoints/...`` was "does not exist" on the
    core backend (the form a config's policy.checkpoint takes), and a relative path would be
    resolved against the run's own directory on the ros backend."""
    mapping = base_mapping(t_event=1.0)
    pkg = "lgtc_policy:checkpoints/lgtc_ippo_n10_m4.pt"
    s = discharge_study_core(pkg, mapping, runs=1, after=0.5)
    assert s["checkpoint"] == str(SHIPPED.resolve())
    (tmp_path / "ck.pt").write_bytes(SHIPPED.read_bytes())
    monkeypatch.chdir(tmp_path)
    s = discharge_study_core("ck.pt", mapping, runs=1, after=0.5)
    assert s["checkpoint"] == str(tmp_path / "ck.pt")
    with pytest.raises(MissionError, match="--checkpoint"):
        discharge_study_core("lgtc_policy:checkpoints/nope.pt", mapping, runs=1, after=0.5)


def test_summary_and_run_lines_are_strict_json(tmp_path, capsys):
    """A run that was not re-covered has ``recover_s`` NaN in Python; discharge.json wrote it
    as ``NaN``, which strict JSON parsers refuse. It is ``null`` now, nested or not."""
    from lgtc_policy.mission.discharge_study import _dumps, _finish

    runs = [
        {"outcome": "not re-covered", "success": False, "abandoned": True, "recover_s": math.nan},
        {"outcome": "re-covered", "success": True, "abandoned": True, "recover_s": 2.5},
    ]
    summary = summarise(runs, "core", None, 40.0)
    summary["extra"] = {"inf": [math.inf, -math.inf, 1.0]}
    _finish(summary, tmp_path, 40.0)
    text = (tmp_path / "discharge.json").read_text()
    got = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in discharge.json"))
    assert [r["recover_s"] for r in got["results"]] == [None, 2.5]
    assert got["extra"] == {"inf": [None, None, 1.0]}
    assert json.loads(_dumps(runs[0]))["recover_s"] is None
    assert math.isnan(runs[0]["recover_s"])  # the caller's dict is not changed
    assert "re-covered within 40 s in 1 of 2 runs" in capsys.readouterr().out
