"""Plots say what they show (issue 16 item 24): the radar's axes name 1 - JSD for the divergences,
loss.png has integer epoch ticks, a title and the best epoch."""
from __future__ import annotations

from trafficgen.cli.generate import loss_figure
from trafficgen.evaluation.plots import radar_axis_label


def test_radar_axes_say_one_minus_jsd():
    assert radar_axis_label("packet_count_jsd") == "1 - packet count JSD"
    assert radar_axis_label("leakage") == "1 - leakage"
    assert radar_axis_label("novelty") == "novelty"


def test_loss_png_has_integer_epoch_ticks_and_a_title():
    import matplotlib.pyplot as plt

    fig = loss_figure({"train_loss": [3.0, 2.5, 2.2], "val_loss": [3.1, 2.7, 2.8], "best_epoch": 1}, "llama")
    ax = fig.axes[0]
    ticks = [t for t in ax.get_xticks() if 1 <= t <= 3]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert ax.get_title() == "llama"
    assert any("best (epoch 2)" in t.get_text() for t in ax.get_legend().get_texts())
    plt.close(fig)
