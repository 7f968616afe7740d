"""The ``lgtc`` command: train, errors, figures from logged runs."""

from __future__ import annotations

import csv
import json

import pytest
from lgtc_policy.cli import main as lgtc_main
from lgtc_policy.cli import resolve_checkpoint
from lgtc_policy.mission.figures import fig3, train_curve


def test_cli_train_writes_run_and_config(tmp_path) -> None:
    run = tmp_path / "run"
    rc = lgtc_main(
        [
            "train",
            "--algo",
            "ippo",
            "--total-env-steps",
            "64",
            "--num-envs",
            "4",
            "--rollout",
            "32",
            "--minibatch",
            "16",
            "--n-agents",
            "3",
            "--n-consumers",
            "2",
            "--episode-length",
            "10",
            "--eval-every",
            "64",
            "--eval-episodes",
            "2",
            "--g",
            "8",
            "--f",
            "8",
            "--hidden",
            "16",
            "--tensorboard",
            "false",
            "--progress",
            "false",
            "--run-dir",
            str(run),
        ]
    )
    assert rc == 0
    cfg = json.loads((run / "config.json").read_text())["train"]
    assert cfg["algo"] == "ippo" and cfg["hidden"] == [16] and cfg["n_agents"] == 3
    assert (run / "best.pt").is_file() and (run / "progress.csv").is_file()


def test_cli_rejects_bad_options(tmp_path, capsys) -> None:
    assert lgtc_main(["train", "--algo", "qmix", "--clip", "0.1"]) == 2
    assert "--clip" in capsys.readouterr().err
    assert lgtc_main(["train", "--algo", "ippo", "--gamma", "2", "--run-dir", str(tmp_path)]) == 2
    assert "--gamma" in capsys.readouterr().err
    assert (
        lgtc_main(["train", "--algo", "ippo", "--n-agents", "0", "--run-dir", str(tmp_path)]) == 2
    )
    assert "n_agents" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["eval", "--episodes", "1000000000"], "argument --episodes: must be an integer from 1"),
        (["eval", "--threads", "100000"], "argument --threads: must be an integer from 1 to 256"),
        (["eval", "--seed", "9" * 30], "argument --seed: must be an integer from 0"),
        (["expert", "--envs", "x"], "argument --envs: must be an integer from 1"),
        # the demo ran with these: a negative --duration ended in an mcap EndOfFile traceback
        (["demo", "--duration", "-1"], "argument --duration: must be a number in (0, 1e+06]"),
        (["demo", "--duration", "nan"], "argument --duration: must be a number in (0, 1e+06]"),
        (["demo", "--linger", "-5"], "argument --linger: must be a number in [0, 1e+06]"),
        (["demo", "--status-every", "-1"], "argument --status-every: must be 0 or a number in"),
        # an overflow in rclpy's timer / a busy 0 ns timer / a run without end
        (["demo", "--status-every", "1e300"], "argument --status-every: must be 0 or a number in"),
        (["demo", "--status-every", "1e-300"], "argument --status-every: must be 0 or a number"),
        (["demo", "--linger", "1e300"], "argument --linger: must be a number in [0, 1e+06]"),
    ],
)
def test_cli_bad_numbers_are_one_line(capsys, argv, words) -> None:
    """Fuzzed numbers: each is refused by its option in one line and exit 2 (they were a
    torch allocation traceback, libgomp running out of memory, an unnamed overflow)."""
    with pytest.raises(SystemExit) as exc:
        lgtc_main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err


@pytest.mark.parametrize(
    ("content", "words"),
    [("x,y\n1,2\n", "no column env_steps"), ("a\n" + "x" * 200_000 + "\n", "not a readable CSV")],
)
def test_train_curve_of_a_wrong_csv_is_one_line(tmp_path, capsys, content, words) -> None:
    """A CSV without the columns or beyond the csv module's field limit was a traceback."""
    csv = tmp_path / "progress.csv"
    csv.write_text(content)
    out = tmp_path / "img"
    assert lgtc_main(["figures", "curve", "--csv", str(csv), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err


def test_resolve_checkpoint_package_path() -> None:
    p = resolve_checkpoint("lgtc_policy:checkpoints/lgtc_ippo_n10_m4.pt")
    assert p.parent.name == "checkpoints" and p.parent.parent.name == "lgtc_policy"


def test_fig3_and_train_curve_from_logs(tmp_path) -> None:
    for algo in ("lgtc_ippo", "vdn"):
        for seed in (1, 2):
            d = tmp_path / "runs" / f"{algo}_s{seed}"
            d.mkdir(parents=True)
            with (d / "progress.csv").open("w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["env_steps", "wall_s", "episode_reward", "eval_reward"])
                for k in range(1, 6):
                    w.writerow([k * 100, k, k * seed, ""])
    out = fig3(tmp_path / "runs", tmp_path / "fig3.png")
    assert out.stat().st_size > 1000
    rows = list(csv.DictReader((tmp_path / "fig3.csv").open()))
    assert len(rows) == 20 and {r["algo"] for r in rows} == {"lgtc_ippo", "vdn"}
    # regenerating from the combined CSV gives the same figure input
    assert fig3(tmp_path / "fig3.csv", tmp_path / "fig3b.png").stat().st_size > 1000
    curve = train_curve(tmp_path / "runs" / "vdn_s1" / "progress.csv", tmp_path / "c.png", 3.0)
    assert curve.stat().st_size > 1000


def test_demo_and_discharge_are_lgtc_subcommands(tmp_path, capsys) -> None:
    """One door: the demo (make demo) and the Fig. 5 study are `lgtc` subcommands with the
    options of their modules, and bad input is one line with exit status 2."""
    import pytest

    for cmd, option in (("demo", "--checkpoint"), ("discharge", "--reanalyse")):
        with pytest.raises(SystemExit) as info:
            lgtc_main([cmd, "--help"])
        assert info.value.code == 0
        assert option in capsys.readouterr().out
    assert lgtc_main(["demo", "--config", str(tmp_path / "none.yaml")]) == 2
    assert "none.yaml" in capsys.readouterr().err
    assert lgtc_main(["discharge", "--reanalyse", "--out", str(tmp_path / "empty")]) == 2
    assert "no seed*/run.mcap" in capsys.readouterr().err


def test_figures_out_that_is_a_file_is_refused_first(tmp_path, capsys) -> None:
    """--out naming a file failed only after the rollouts (fig56 ran past a minute, then a
    traceback); now one line before any work."""
    taken = tmp_path / "taken"
    taken.write_text("")
    assert lgtc_main(["figures", "fig56", "--out", str(taken)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"lgtc figures: error: --out {taken}: cannot make this folder (File exists)"]


@pytest.mark.parametrize(
    "text, says",
    [
        ("", "is not a folder or a fig3 CSV"),
        ("a,b\n1,2\n", "no column algo, seed, env_steps, episode_reward"),
        ("algo,seed,env_steps,episode_reward\n", "the CSV has no rows"),
    ],
)
def test_fig3_runs_that_is_no_runs_folder_or_fig3_csv_is_refused(
    tmp_path, capsys, text, says
) -> None:
    """A file that is not fig3's combined CSV drew an empty figure and exited 0."""
    runs = tmp_path / "runs.csv"
    runs.write_text(text)
    assert lgtc_main(["figures", "fig3", "--runs", str(runs), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--runs {runs}" in err[0] and says in err[0], err
    assert "lgtc sweep --run-dir" in err[0]
    assert not (tmp_path / "o").exists()


def test_fig3_redrawn_from_its_own_csv_through_the_cli(tmp_path, capsys) -> None:
    """The combined CSV that fig3 writes next to its figure draws the figure again."""
    runs = tmp_path / "fig3.csv"
    rows = [("ippo", s, n, 1.0 + 0.1 * n / 1000 + s) for s in (0, 1) for n in (0, 1000, 2000)]
    runs.write_text(
        "algo,seed,env_steps,episode_reward\n"
        + "".join(f"{a},{s},{n},{r}\n" for a, s, n, r in rows)
    )
    out = tmp_path / "o"
    assert lgtc_main(["figures", "fig3", "--runs", str(runs), "--out", str(out)]) == 0
    assert (out / "lgtc_fig3_training.png").stat().st_size > 1000
    # the deterministic evaluation's reward under another name and title (variants that are
    # not the paper's Fig. 3); a run with no evaluation row is drawn from nothing: one line
    runs2 = tmp_path / "runs"
    for name, evals in (("ippo_s1", [1.0, 2.0]), ("ippo_relpos_s1", [3.0, 5.0])):
        (runs2 / name).mkdir(parents=True)
        (runs2 / name / "progress.csv").write_text(
            "env_steps,episode_reward,eval_reward\n100,0.5,\n"
            f"200,0.6,{evals[0]}\n300,0.7,{evals[1]}\n"
        )
    argv = ["figures", "fig3", "--runs", str(runs2), "--out", str(out), "--key", "eval_reward"]
    argv += ["--stem", "cmp", "--title", "relpos vs paper"]
    assert lgtc_main(argv) == 0
    assert (out / "cmp.png").stat().st_size > 1000
    got = list(csv.DictReader((out / "cmp.csv").open()))
    assert {r["algo"] for r in got} == {"ippo", "ippo_relpos"} and len(got) == 6
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        lgtc_main(argv[:-4] + ["--stem", "a/b"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "--stem" in err and "not a file name" in err and len(err.splitlines()) == 1
    with pytest.raises(SystemExit) as exc:
        lgtc_main(argv[:-2] + ["--title", "x" * 100_000])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "--title" in err and "at most 200" in err and len(err.splitlines()) == 1
    assert lgtc_main(["figures", "fig3", "--runs", str(runs), "--out", str(out)] + [
        "--key", "eval_reward"]) != 0  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert "no run has a eval_reward value" in err and len(err.splitlines()) == 1


def test_train_run_dir_under_a_file_is_one_line_naming_the_option(tmp_path, capsys) -> None:
    """Was the logger's raw '[Errno 17] File exists' (train) / '[Errno 20] Not a directory'
    (sweep, after the checkpoints of the first method were looked up)."""
    taken = tmp_path / "taken"
    taken.write_text("")
    argv = ["train", "--algo", "ippo", "--run-dir", str(taken)]
    assert lgtc_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"lgtc train: error: --run-dir {taken}: {taken} is a file; give a folder"]
    assert lgtc_main(["sweep", "--algos", "ippo", "--seeds", "1", "--run-dir", str(taken)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{taken} is a file; give a folder" in err[0], err


def test_fig2_draws_one_episode_and_writes_its_rewards_and_clusters(tmp_path) -> None:
    """Fig. 2 of the shipped policy: one row per agent and tick, each reward labelled with the
    consumer the agent served; the rewards of agents serving one consumer are closer to each
    other than to another sub-team's (the ratio of lgtc_policy.model.clusters < 1)."""
    import torch
    from lgtc_policy.model.clusters import cluster_spread_ratio

    out = tmp_path / "o"
    assert lgtc_main(["figures", "fig2", "--out", str(out), "--seed", "0"]) == 0
    assert (out / "lgtc_fig2_reward_clusters.png").stat().st_size > 1000
    with (out / "lgtc_fig2_reward_clusters.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    n = 1 + max(int(r["agent"]) for r in rows)
    assert n == 10 and len(rows) % n == 0 and len(rows) // n >= 20
    assert {int(r["consumer"]) for r in rows} <= {-1, 0, 1, 2, 3}
    assert all(-1 <= float(r["x"]) <= 1 and -1 <= float(r["y"]) <= 1 for r in rows)
    T = len(rows) // n
    reward = torch.tensor([float(r["reward"]) for r in rows]).view(T, n, 1)
    labels = torch.tensor([int(r["consumer"]) for r in rows]).view(T, n)
    assert cluster_spread_ratio(reward, labels) < 1.0


def test_lgtc_run_logs_its_coupling_and_takes_the_constraint_pi(tmp_path) -> None:
    """progress.csv holds the largest row sum of |A^T A| of the policy and the value at each
    update: at the last update, the networks the run saved."""
    import torch
    from lgtc_policy.model.checkpoint import build_net, load_checkpoint

    run = tmp_path / "run"
    small = ["--n-agents", "3", "--n-consumers", "2", "--episode-length", "10", "--g", "8"]
    small += ["--f", "8", "--hidden", "16", "--tensorboard", "false", "--progress", "false"]
    argv = ["train", "--algo", "lgtc_ippo", "--pi-form", "constraint", "--total-env-steps"]
    argv += ["64", "--num-envs", "4", "--rollout", "32", "--minibatch", "16", "--eval-every"]
    argv += ["64", "--eval-episodes", "2", "--checkpoint-every", "32", "--run-dir", str(run)]
    assert lgtc_main(argv + small) == 0
    with (run / "progress.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2
    ck = load_checkpoint(str(run / "last.pt"))
    assert json.loads((run / "config.json").read_text())["train"]["pi_form"] == "constraint"
    for key, which in (("coupling", "policy"), ("coupling_v", "value")):
        with torch.no_grad():
            want = float(build_net(ck, which).cell.K.abs().sum(1).max())
        assert float(rows[-1][key]) == pytest.approx(want, rel=1e-6) and want > 0


def test_cell_curves_from_run_folders_and_from_their_csv(tmp_path, capsys) -> None:
    """`lgtc figures cell`: one line per LGTC run (runs without tau_min, e.g. IPPO, are left
    out), the combined CSV redraws the figure, and a folder with no LGTC run is one line."""
    runs = tmp_path / "runs"
    head = "env_steps,wall_s,episode_reward,tau_min,contraction_c,state_abs_max"
    for name, c in (("lgtc_ippo_a_s1", -1.0), ("lgtc_ippo_b_s1", 0.5)):
        (runs / name).mkdir(parents=True)
        body = "".join(f"{n},1,{n / 1e4},2,{c},0.4\n" for n in (100, 200, 300))
        (runs / name / "progress.csv").write_text(head + "\n" + body)
    (runs / "ippo_s1").mkdir()
    (runs / "ippo_s1" / "progress.csv").write_text("env_steps,episode_reward\n100,1\n")
    out = tmp_path / "o"
    assert lgtc_main(["figures", "cell", "--runs", str(runs), "--out", str(out)]) == 0
    assert (out / "lgtc_cell_training.png").stat().st_size > 1000
    with (out / "lgtc_cell_training.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["run"] for r in rows] == ["lgtc_ippo_a_s1"] * 3 + ["lgtc_ippo_b_s1"] * 3
    assert [float(r["contraction_c"]) for r in rows] == [-1.0] * 3 + [0.5] * 3
    assert {r["coupling"] for r in rows} == {""}  # not logged by these runs
    again = tmp_path / "again"
    argv = ["figures", "cell", "--runs", str(out / "lgtc_cell_training.csv"), "--out", str(again)]
    assert lgtc_main(argv) == 0
    assert (again / "lgtc_cell_training.csv").read_text() == (
        out / "lgtc_cell_training.csv"
    ).read_text()
    capsys.readouterr()
    assert lgtc_main(["figures", "cell", "--runs", str(runs / "ippo_s1"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no LGTC-IPPO progress.csv" in err[0], err


@pytest.mark.parametrize("seeds", [[], ["--seeds", "1", "2"]])
def test_a_diverged_update_stops_the_run_in_one_line(tmp_path, capsys, seeds) -> None:
    """Non-finite losses end the run at that update (the row is logged) with one line saying
    why, instead of the env's 'actions are not finite' at the next rollout."""
    run = tmp_path / "run"
    small = ["--n-agents", "3", "--n-consumers", "2", "--episode-length", "10", "--g", "8"]
    small += ["--f", "8", "--hidden", "16", "--tensorboard", "false", "--progress", "false"]
    argv = ["train", "--algo", "lgtc_ippo", "--alpha", "0", "--lr", "1000"]
    argv += ["--total-env-steps", "256", "--num-envs", "4", "--rollout", "32"]
    argv += ["--minibatch", "16", "--eval-every", "256", "--eval-episodes", "2"]
    assert lgtc_main(argv + small + seeds + ["--run-dir", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    first = "lgtc train: error: " + ("seed 1: " if seeds else "") + "training diverged: "
    assert err[0].startswith(first), err
    assert "update ending at 32 env steps" in err[0] and "lower --lr" in err[0]
    prog = (run / "s1" if seeds else run) / "progress.csv"
    with prog.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["env_steps"] for r in rows] == ["32"] and rows[0]["loss_pi"] == "nan"


def test_diverged_message_names_the_cell_when_the_state_left_theorem_1() -> None:
    from lgtc_policy.train.ppo import _diverged

    row = {"loss_pi": float("nan"), "loss_v": 0.5, "state_abs_max": 117.0}
    msg = _diverged(row, 184320, 150000)
    assert msg == (
        "training diverged: the losses of the update ending at 184320 env steps are not "
        "finite (loss_pi nan, loss_v 0.5); the LGTC state reached max |x| = 117, outside "
        "Theorem 1's [-1, 1] (the coupling outgrew the leak: contraction_c < 0 in "
        "progress.csv); keep Pi (--alpha > 0) or use --pi-form constraint, which holds the "
        "margin at 0; the last finite weights are last.pt's (150000 env steps)"
    )
    assert "lower --lr" in _diverged({"loss_pi": 1.0, "loss_v": float("inf")}, 64, 0)


def test_relpos_variant_trains_saves_evaluates_and_runs_decentralized(tmp_path, capsys) -> None:
    """`--comm relpos` (not in the paper): the networks get the neighbour term, the checkpoint
    records it, `lgtc eval` names the variant in its JSON and headline, and the per-robot
    executor the ROS node uses (agent.load_policy) reproduces the batched network."""
    import numpy as np
    import torch
    from lgtc_policy.agent import load_policy
    from lgtc_policy.env import EnvConfig, ResourceEnv
    from lgtc_policy.model.checkpoint import build_net, load_checkpoint
    from lgtc_policy.model.decentralized import AgentObs
    from lgtc_policy.model.features import inputs_from_obs

    run = tmp_path / "run"
    small = ["--n-agents", "3", "--n-consumers", "2", "--episode-length", "10", "--g", "8"]
    small += ["--f", "8", "--hidden", "16", "--tensorboard", "false", "--progress", "false"]
    argv = ["train", "--algo", "lgtc_ippo", "--comm", "relpos", "--total-env-steps", "64"]
    argv += ["--num-envs", "4", "--rollout", "32", "--minibatch", "16", "--eval-every", "64"]
    argv += ["--eval-episodes", "2", "--checkpoint-every", "32", "--run-dir", str(run)]
    assert lgtc_main(argv + small) == 0
    ck = load_checkpoint(str(run / "best.pt"))
    net = build_net(ck, "policy")
    assert net.cfg.comm == "relpos" and build_net(ck, "value").cfg.comm == "relpos"
    assert any(k.startswith("rho.") for k in ck["state_dicts"]["policy"])
    capsys.readouterr()
    out = tmp_path / "eval.json"
    rc = lgtc_main(["eval", "--checkpoint", str(run / "best.pt"), "--episodes", "2"])
    assert rc == 0 and "+relpos" in capsys.readouterr().out
    rc = lgtc_main(["eval", "--checkpoint", str(run / "best.pt"), "--episodes", "2"] + [
        "--json", str(out), "--no-expert"])  # fmt: skip
    assert rc == 0 and json.loads(out.read_text())["comm"] == "relpos"
    env_cfg = EnvConfig.from_dict(dict(ck["env_config"]))
    env = ResourceEnv(env_cfg, 1, seed=0)
    env.reset()
    env.pos[0, 1] = env.pos[0, 0] + 0.05  # a close neighbour, so the term matters
    obs = env.observe()
    assert bool(obs.adjacency[0, 0, 1])
    dec = load_policy(str(run / "best.pt"), env_cfg.n_resources)
    with torch.no_grad():
        o, _, _ = net(inputs_from_obs(obs), torch.zeros(1, env_cfg.n_agents, net.state_dim))
    want = net.action(o)[0]
    for i in range(env_cfg.n_agents):
        nbrs = obs.adjacency[0, i].nonzero().flatten().tolist()
        me = AgentObs.from_batched(obs, 0, i)
        msgs = [dec.initial_message(AgentObs.from_batched(obs, 0, j)) for j in nbrs]
        a, _, _ = dec.step(me, np.stack(msgs) if msgs else np.zeros((0, dec.message_dim)),
                           dec.initial_state())  # fmt: skip
        np.testing.assert_allclose(a, want[i].numpy() / max(1.0, float(want[i].norm())),
                                   atol=1e-5)  # fmt: skip


@pytest.mark.parametrize(
    ("which", "progress", "says"),
    [
        # a progress.csv without env_steps was a KeyError traceback
        ("fig3", "foo,bar\n1,2\n", "progress.csv: no column env_steps"),
        # text or NaN in a numeric column: an error that named no file
        ("fig3", "env_steps,episode_reward\nabc,1\n", "progress.csv line 2: env_steps 'abc'"),
        ("fig3", "env_steps,episode_reward\nnan,1\n", "line 2: env_steps 'nan' is not a whole"),
        ("cell", "env_steps,episode_reward,tau_min\nabc,1,0.1\n", "env_steps 'abc' is not a"),
        ("curve", "env_steps,episode_reward\nabc,1\n", "progress.csv line 2: env_steps 'abc'"),
        # nothing finite to draw: an empty figure with exit 0
        ("curve", "env_steps,episode_reward,eval_reward\n", "(0 rows), nothing to draw"),
        ("curve", "env_steps,episode_reward\nnan,nan\n5,\n", "(2 rows), nothing to draw"),
        ("cell", "env_steps,episode_reward,tau_min\nnan,nan,nan\n", "nothing to draw"),
        # a 0-row progress.csv was "no progress.csv under ..."
        ("fig3", "env_steps,episode_reward\n", "1 progress.csv with no rows under"),
    ],
)
def test_figures_from_damaged_progress_csv_are_one_line(tmp_path, capsys, which, progress, says):
    run = tmp_path / "runs" / "lgtc_ippo_s0"
    run.mkdir(parents=True)
    (run / "progress.csv").write_text(progress)
    out = tmp_path / "img"
    src = ["--csv", str(run / "progress.csv")] if which == "curve" else ["--runs", str(run.parent)]
    assert lgtc_main(["figures", which, *src, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0], err
    assert not list(out.glob("*.png"))


def test_fig3_csv_and_curve_without_csv_name_the_input(tmp_path, capsys) -> None:
    bad = tmp_path / "fig3.csv"
    bad.write_text("algo,seed,env_steps,episode_reward\nippo,x,1,2\n")
    assert lgtc_main(["figures", "fig3", "--runs", str(bad), "--out", str(tmp_path)]) == 2
    assert f"{bad} line 2: seed 'x' is not a number" in capsys.readouterr().err
    assert lgtc_main(["figures", "curve", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()  # was "[Errno 21] Is a directory: '.'"
    assert err == [
        "lgtc figures: error: --csv is missing; give a run's progress.csv "
        "(e.g. --csv runs/lgtc_ippo_s0/progress.csv)"
    ]
