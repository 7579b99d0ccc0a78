"""The per-layer breakdown benchmark: its table is complete and its CLI keeps existing files."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import conv_layers
from emofx.nets.model import ModelConfig


def test_layer_breakdown_times_every_piece_of_every_layer():
    config = ModelConfig(num_classes=3, input_size=8, widths=(64, 8), dense_units=8)
    table = conv_layers.layer_breakdown(config, batch_size=2, repeats=1)
    # forward, 2 input gradients, 3 kernel gradients; the 64-channel-input layer adds 3 Winograd
    # pieces; three whole training steps (lax, split-grad, winograd)
    assert len(table) == 6 + 6 + 3 + 3
    assert set(table["formulation"]) == {"lax", "split-grad", "patches", "winograd"}
    assert list(table["layer"].unique()) == ["conv1 8x8 1->64", "conv2 4x4 64->8", "whole network"]
    assert "winograd" not in set(table[table["layer"] == "conv1 8x8 1->64"]["formulation"])
    first = table[table["layer"] == "conv1 8x8 1->64"]
    assert np.allclose(first["gflop"], 2e-9 * 2 * 64 * 25 * 64)
    assert (table[["cpu_ms", "wall_ms"]] >= 0).all().all() and (table["wall_ms"] > 0).all()


def test_cli_refuses_to_overwrite_a_csv(tmp_path, capsys):
    existing = tmp_path / "layers.csv"
    existing.write_text("keep me")
    with pytest.raises(SystemExit) as exit_info:
        conv_layers.main(["--csv", str(existing)])
    assert exit_info.value.code == 2
    assert "already exists" in capsys.readouterr().err
    assert existing.read_text() == "keep me"
