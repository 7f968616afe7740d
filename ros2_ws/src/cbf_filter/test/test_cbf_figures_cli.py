"""``cbf_figures``: a bad ``--out`` is one line and exit status 2, before anything is drawn."""

from __future__ import annotations

import pytest
from cbf_filter.figures import main


@pytest.mark.parametrize("kind", ["file", "under_a_file", "empty"])
def test_an_out_that_cannot_be_a_folder_is_one_line(tmp_path, capsys, kind):
    taken = tmp_path / "taken"
    taken.write_text("")
    out = {"file": str(taken), "under_a_file": str(taken / "img"), "empty": ""}[kind]
    assert main(["--out", out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"cbf_figures: error: --out {out!r}")
    assert "name a writable folder" in err[0]


def test_a_bad_option_is_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--no-such-option"])
    assert exc.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
