"""Checkpoints are checked where they are loaded and at ``swarm validate`` (issue #15, finding 6).

One loader (:func:`lgtc_policy.model.checkpoint.load_checkpoint`, under
:func:`lgtc_policy.agent.load_policy` for the nodes) refuses non-finite weights and pickled
objects without passing on torch's advice to load unsafely; ``swarm validate`` reaches the
same checks through the ``swarm.validators`` entry point; package paths stay in the package.
"""

from __future__ import annotations

import os
import pickle
import random
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import torch
import yaml
from lgtc_policy.agent import MissionError, load_policy
from lgtc_policy.cli import main as lgtc_main
from lgtc_policy.cli import resolve_checkpoint
from lgtc_policy.config_check import check_swarm_config
from lgtc_policy.model.checkpoint import (
    CheckpointError,
    build_net,
    load_checkpoint,
    save_checkpoint,
)
from sim_bridge.config import load_config

REPO = Path(__file__).resolve().parents[4]
DEMO = REPO / "launch" / "demo.yaml"
SHIPPED = "lgtc_policy:checkpoints/lgtc_ippo_n10_m4.pt"


class Opaque:
    """Any Python object: pickled into a checkpoint it makes the file unsafe to load."""


@pytest.fixture(scope="module")
def shipped():
    ck = load_checkpoint(resolve_checkpoint(SHIPPED))
    ck.pop("format")
    return ck


@pytest.fixture(scope="module")
def nan_ckpt(tmp_path_factory, shipped):
    ck = {**shipped, "state_dicts": {k: dict(v) for k, v in shipped["state_dicts"].items()}}
    name = next(iter(ck["state_dicts"]["policy"]))
    weight = ck["state_dicts"]["policy"][name].clone()
    weight.view(-1)[0] = float("nan")
    ck["state_dicts"]["policy"][name] = weight
    return save_checkpoint(tmp_path_factory.mktemp("nan") / "nan.pt", ck), name


def swarm_file(tmp_path: Path, checkpoint: str, **changes) -> Path:
    data = yaml.safe_load(DEMO.read_text())
    data["policy"] = {"checkpoint": checkpoint}
    data.update(changes)
    path = tmp_path / "swarm.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run(*args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "ROS_DOMAIN_ID": str(random.SystemRandom().randint(100, 200)),
    }
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=180, env=env
    )


def one_error_line(proc: subprocess.CompletedProcess, prefix: str) -> str:
    out = (proc.stdout + proc.stderr).strip()
    assert "Traceback" not in out and "weights_only" not in out, out
    lines = [line for line in out.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, out
    return lines[0]


def swarm_validate(path: Path) -> str:
    proc = run("-m", "sim_bridge.cli", "validate", str(path))
    assert proc.returncode == 1, proc.stderr
    return one_error_line(proc, "error:")


# ----------------------------------------------------------------------------- non-finite


def test_nan_weights_are_refused_at_load(nan_ckpt):
    path, name = nan_ckpt
    with pytest.raises(CheckpointError, match=f"weight policy.{name} has 1 non-finite"):
        load_checkpoint(path)
    with pytest.raises(MissionError, match="non-finite"):
        load_policy(path, 2)


def test_nan_weights_stop_the_policy_node_with_one_line(tmp_path, nan_ckpt):
    cfg = swarm_file(tmp_path, str(nan_ckpt[0]))
    proc = run(
        "-m", "lgtc_policy.ros.node", "--ros-args", "-p", "robot:=cf1", "-p", f"config:={cfg}"
    )
    assert proc.returncode == 2
    assert "non-finite" in one_error_line(proc, "policy_node:")


def test_nan_weights_are_refused_at_validate(tmp_path, nan_ckpt):
    line = swarm_validate(swarm_file(tmp_path, str(nan_ckpt[0])))
    assert line.startswith("error: policy.checkpoint:") and "non-finite" in line


# ----------------------------------------------------------------------------- pickles


@pytest.mark.parametrize("kind", ["torch_save_object", "plain_pickle"])
def test_pickled_objects_are_refused_without_unsafe_advice(tmp_path, kind):
    path = tmp_path / "model.pt"
    if kind == "torch_save_object":
        torch.save({"format": "lgtc_policy.checkpoint/1", "model": Opaque()}, path)
    else:
        path.write_bytes(pickle.dumps({"model": Opaque()}, protocol=4))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert "not a plain-weights checkpoint" in msg and "save_checkpoint" in msg
    assert "weights_only" not in msg and "\n" not in msg
    if kind == "torch_save_object":
        assert "Opaque" in msg and "pickled Python objects" in msg
    line = swarm_validate(swarm_file(tmp_path, str(path)))
    assert "not a plain-weights checkpoint" in line


# ----------------------------------------------------------------------------- paths


def test_package_path_leaving_the_package_is_refused(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="leaves package 'lgtc_policy'"):
        resolve_checkpoint("lgtc_policy:../../x")
    assert lgtc_main(["eval", "--checkpoint", "lgtc_policy:../../x", "--no-expert"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lgtc eval: error:") and len(err.splitlines()) == 1
    line = swarm_validate(swarm_file(tmp_path, "lgtc_policy:../../x"))
    assert "leaves package 'lgtc_policy'" in line


def test_missing_checkpoint_is_a_validator_problem(tmp_path):
    cfg = load_config(swarm_file(tmp_path, "absent.pt"))
    (problem,) = check_swarm_config(cfg)
    assert problem.path == "policy.checkpoint" and "not found" in problem.message


# ----------------------------------------------------------------------------- sizes


def test_checkpoint_must_fit_the_configs_resource_types(tmp_path):
    cfg = load_config(swarm_file(tmp_path, SHIPPED, resource_types=["energy", "payload", "spare"]))
    (problem,) = check_swarm_config(cfg)
    assert "r=2" in problem.message and "r=3" in problem.message


def test_a_value_network_saved_as_policy_is_refused(tmp_path, shipped):
    ck = dict(shipped)
    ck["nets"] = {**shipped["nets"], "policy": shipped["nets"]["value"]}
    ck["state_dicts"] = {**shipped["state_dicts"], "policy": shipped["state_dicts"]["value"]}
    path = save_checkpoint(tmp_path / "value.pt", ck)
    with pytest.raises(MissionError, match="not an LGTC policy"):
        load_policy(path, 2)


def test_policy_without_consumers_is_refused(tmp_path):
    cfg = load_config(swarm_file(tmp_path, SHIPPED, consumers=[]))
    assert [p.path for p in check_swarm_config(cfg)] == ["consumers"]


# ----------------------------------------------------------------------------- plug-in


def test_validator_is_registered_and_the_demo_passes():
    names = {ep.value for ep in entry_points(group="swarm.validators")}
    assert "lgtc_policy.config_check:check_swarm_config" in names
    assert check_swarm_config(load_config(DEMO)) == []
    proc = run("-m", "sim_bridge.cli", "validate", str(DEMO))
    assert proc.returncode == 0 and ": ok:" in proc.stdout


# ----------------------------------------------------------------------------- damaged layout


def _edited(shipped, edit) -> dict:
    ck = {k: (dict(v) if isinstance(v, dict) else v) for k, v in shipped.items()}
    ck["nets"] = {k: dict(v) for k, v in shipped["nets"].items()}
    edit(ck)
    return ck


DAMAGED = {
    # fuzzed checkpoints that were tracebacks (TypeError, a 4 TB allocation, a negative tensor
    # size, a matmul shape error mid-evaluation) or were evaluated as if sound
    "nets_none": (lambda ck: ck.update(nets=None), "'nets' is a NoneType, not a mapping"),
    "eval_str": (lambda ck: ck.update(eval="x"), "'eval' is a str, not a mapping"),
    "algo_int": (lambda ck: ck.update(algo=3), "'algo' is 3, not an algorithm name"),
    "log_std_str": (
        lambda ck: ck["state_dicts"].update(log_std="x"),
        "state_dicts['log_std'] is not a mapping of tensors",
    ),
    "r3_env": (
        lambda ck: ck["env_config"].update(n_resources=3),
        "takes items of 6/6 features but its env_config's r=3",
    ),
    # integer weights were loaded (cast to float) and evaluated as a policy of zeros and ones
    "int_weights": (
        lambda ck: ck["state_dicts"].update(
            policy={k: v.long() for k, v in ck["state_dicts"]["policy"].items()}
        ),
        "holds torch.int64 values, not float weights",
    ),
}


@pytest.mark.parametrize("kind", sorted(DAMAGED))
def test_damaged_layout_is_refused_at_load(tmp_path, shipped, kind):
    edit, words = DAMAGED[kind]
    path = save_checkpoint(tmp_path / f"{kind}.pt", _edited(shipped, edit))
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    assert words in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize(
    ("field", "value"), [("g", 10**6), ("hidden", [10**6, 10**6]), ("hidden", [-1])]
)
def test_net_config_sizes_are_checked_without_allocating(tmp_path, shipped, field, value):
    """A config naming huge or negative sizes is refused from the shapes alone (the meta
    device): it was a multi-TB allocation or a negative-size RuntimeError."""
    path = save_checkpoint(
        tmp_path / "sizes.pt",
        _edited(shipped, lambda ck: ck["nets"]["policy"].update(**{field: value})),
    )
    ck = load_checkpoint(path)
    with pytest.raises(CheckpointError, match="checkpoint network 'policy'"):
        build_net(ck, "policy")


def test_a_folder_given_as_checkpoint_is_named_a_folder(tmp_path, capsys):
    """It was reported as "does not exist"."""
    (tmp_path / "run.pt").mkdir()
    with pytest.raises(CheckpointError, match="is a folder; pass the .pt file in it"):
        load_checkpoint(tmp_path / "run.pt")
    assert lgtc_main(["eval", "--checkpoint", str(tmp_path), "--no-expert"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a folder" in err[0], err


@pytest.mark.parametrize(
    ("field", "value"),
    [("episode_length", 10**12), ("assign_restarts", 10**9), ("discharge_rate", "x")],
)
def test_a_checkpoint_with_an_absurd_env_config_is_one_line(
    tmp_path, shipped, capsys, field, value
):
    """episode_length 1e12 or assign_restarts 1e9 in a checkpoint's env_config made
    `lgtc eval` run for ever; a string rate was a TypeError traceback."""
    ck = _edited(shipped, lambda c: c.update(env_config={**c["env_config"], field: value}))
    path = save_checkpoint(tmp_path / "absurd.pt", ck)
    argv = ["eval", "--checkpoint", str(path), "--no-expert", "--episodes", "1"]
    assert lgtc_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"EnvConfig.{field}=" in err[0], err


def test_lgtc_eval_with_a_path_too_long_is_one_line(capsys):
    assert lgtc_main(["eval", "--checkpoint", "a" * 5000, "--no-expert", "--episodes", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lgtc eval: error:"), err


@pytest.mark.parametrize("where", ["folder", "folder/", "file/x.json", "/proc/x.json"])
def test_lgtc_eval_json_and_export_out_that_cannot_be_written_are_refused_first(
    tmp_path, capsys, where
):
    """--json / --out naming a folder, a path under a file or an unwritable place failed only
    after the whole evaluation, naming a '.tmp' file and leaving it behind; and ``--out dir/``
    wrote a file named ``dir``. Now one line before any evaluation."""
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("")
    target = where if where.startswith("/") else f"{tmp_path}/{where}"
    for argv, flag in (
        (["eval", "--no-expert", "--episodes", "1", "--json", target], "--json"),
        (["export", "--checkpoint", str(resolve_checkpoint(SHIPPED)), "--out", target],
         "--out"),
    ):  # fmt: skip
        assert lgtc_main([*argv, "--no-expert"] if argv[0] == "export" else argv) == 2
        out, err = capsys.readouterr()
        err = err.strip().splitlines()
        assert len(err) == 1 and f"{flag} {target}: " in err[0], err
        assert ".tmp" not in err[0] and out == ""  # refused before the evaluation printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder"]
    assert not list((tmp_path / "folder").iterdir())


def test_save_checkpoint_that_fails_leaves_no_partial_file(tmp_path, shipped):
    (tmp_path / "taken.pt").mkdir()
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "taken.pt", _edited(shipped, lambda c: None))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.pt"]


def test_write_json_that_fails_leaves_no_partial_file(tmp_path):
    from lgtc_policy.train.common import write_json

    (tmp_path / "taken.json").mkdir()
    with pytest.raises(OSError):
        write_json(tmp_path / "taken.json", {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.json"]
    write_json(tmp_path / "ok.json", {"a": 1})
    assert (tmp_path / "ok.json").read_text() == '{\n  "a": 1\n}'
