"""``dmar demo`` over real DDS on a 5 x 5 arena (3 drones): it visits every task and writes its
report, MCAP and GIF; bad flags and configs give one line and status 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dmar_agent.cli import main
from dmar_agent.mission.configs import routing_config

pytestmark = pytest.mark.ros
LGTC_DEMO = str(Path(__file__).resolve().parents[4] / "launch" / "demo.yaml")


@pytest.mark.slow
def test_demo_writes_report_mcap_and_gif(tmp_path, capfd):
    cfg = routing_config(tmp_path / "swarm.yaml", seed=2, robots=3)
    out = tmp_path / "run"
    code = main(["demo", "--config", str(cfg), "--out", str(out), "--duration", "120",
                 "--status-every", "0"])  # fmt: skip
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["tasks_visited"] == report["tasks_total"] == 3
    assert report["min_separation_margin_m"] >= 0.0
    assert report["cost_moves"] > 0 and report["cost_m"] == pytest.approx(
        0.2 * report["cost_moves"]
    )
    assert report["clusters_formed"] >= 1
    assert (out / "run.mcap").stat().st_size > 0
    assert (out / "swarm.gif").read_bytes()[:4] == b"GIF8"
    text = (out / "report.md").read_text()
    assert "| tasks visited | 3/3 |" in text
    assert text in capfd.readouterr().out


def test_demo_bad_input_is_one_line(tmp_path, capsys):
    assert main(["demo", "--config", LGTC_DEMO, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no routing section" in err[0]
    cfg = routing_config(tmp_path / "swarm.yaml", seed=2)
    assert main(["demo", "--config", str(cfg), "--duration", "-1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["dmar: error: --duration -1.0: must be > 0 s"]


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "1e300", "1e-300"])
def test_demo_status_every_is_checked_before_the_swarm_starts(tmp_path, capsys, value):
    """`--status-every -1` started the swarm and exited 1 without a clear line; `1e300`
    overflowed rclpy's timer and `1e-300` was a busy one."""
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--status-every", value, "--out", str(tmp_path / "run")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    want = "argument --status-every: must be 0 or a number in [0.01, 1e+06]"
    assert len(err) == 1 and want in err[0]
    assert not (tmp_path / "run").exists()
