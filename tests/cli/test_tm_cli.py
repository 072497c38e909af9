"""`trafficgen tm train / forecast / evaluate` end to end on a tiny series."""
from __future__ import annotations

import json

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from trafficgen.cli.main import app
from trafficgen.data.tm import write_tm_npy
from trafficgen.data.tmseries import TMSeries
from trafficgen.errors import ConfigError


@pytest.fixture
def tm_file(rng, tmp_path):
    t = np.arange(160)[:, None, None]
    values = 1e4 * (1.5 + np.sin(2 * np.pi * t / 24 + rng.uniform(0, 6, size=(3, 3)))) + rng.uniform(0, 100, (160, 3, 3))
    path = tmp_path / "toy.npy"
    write_tm_npy(TMSeries(values, ["a", "b", "c"], 3600.0, "bytes"), path)
    return path


def _invoke(*args):
    result = CliRunner().invoke(app, list(args), catch_exceptions=True)
    return result


def test_tm_evaluate_persistence(tm_file, tmp_path):
    out = tmp_path / "eval"
    r = _invoke("tm", "evaluate", "--model", "persistence", "--data", str(tm_file), "-o", str(out),
                "--horizons", "1,3")
    assert r.exit_code == 0, r.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "persistence" and set(metrics["metrics"]) == {"1", "3"}
    assert metrics["n_origins"] == 160 - 136 - 3
    assert (out / "od_pairs.png").exists() and (out / "error_heatmap.png").exists()
    assert not (out / "forecasts.npz").exists()
    assert "| persistence |" in (out / "table.md").read_text()


def test_tm_train_lstm_then_forecast(tm_file, tmp_path):
    model_dir = tmp_path / "lstm"
    r = _invoke("tm", "train", "--model", "lstm", "--data", str(tm_file), "-o", str(model_dir), "--epochs", "2",
                "--t-in", "6", "--horizons", "1,2", "--seed", "5")
    assert r.exit_code == 0, r.output
    cfg = json.loads((model_dir / "config.json").read_text())
    assert cfg["tm_model"] == "lstm" and cfg["params"]["t_in"] == 6 and cfg["params"]["random_state"] == 5
    out = tmp_path / "fc"
    r = _invoke("tm", "forecast", "--model", str(model_dir), "--data", str(tm_file), "-o", str(out), "--t-in", "6")
    assert r.exit_code == 0, r.output
    with np.load(out / "forecasts.npz") as z:
        assert z["point"].shape == (len(z["origins"]), 2, 3, 3) and z["horizons"].tolist() == [1, 2]
        assert str(z["unit"]) == "bytes" and z["origins"][0] == 136
        np.testing.assert_array_equal(z["y_true"][:, 0], np.load(tm_file)[z["origins"] + 1])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "lstm" and metrics["baseline"]["model"] == "persistence"
    # the same saved model forecasts the same numbers again
    r = _invoke("tm", "forecast", "--model", str(model_dir), "--data", str(tm_file), "-o", str(tmp_path / "fc2"),
                "--t-in", "6")
    with np.load(out / "forecasts.npz") as a, np.load(tmp_path / "fc2" / "forecasts.npz") as b:
        np.testing.assert_array_equal(a["point"], b["point"])


def test_tm_forecast_samples_and_errors(tm_file, tmp_path):
    out = tmp_path / "s"
    r = _invoke("tm", "forecast", "--model", "seasonal", "--data", str(tm_file), "-o", str(out), "--samples", "4",
                "--horizons", "1")
    assert r.exit_code == 0, r.output
    with np.load(out / "forecasts.npz") as z:
        assert z["samples"].shape[1] == 4 and z["quantiles"].shape[0] == len(z["quantile_levels"])
        np.testing.assert_array_equal(z["point"][:, 0], np.load(tm_file)[z["origins"] + 1 - 24])
    assert (out / "fan_chart.png").read_bytes()[:4] == b"\x89PNG"
    r = _invoke("tm", "forecast", "--model", "seasonal", "--data", str(tm_file), "-o", str(tmp_path / "f2"),
                "--samples", "2", "--horizons", "1,2", "--fan-od", "a-b,2-0", "--fan-horizon", "2")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "f2" / "fan_chart.png").exists()
    for bad in (["--samples", "2", "--fan-od", "a-z"], ["--fan-od", "a-b"], ["--samples", "2", "--fan-horizon", "7"]):
        r = _invoke("tm", "forecast", "--model", "seasonal", "--data", str(tm_file), "-o", str(tmp_path / "bad"),
                    "--horizons", "1", *bad)
        assert isinstance(r.exception, ConfigError), (bad, r.output)
        assert not (tmp_path / "bad").exists()
    r = _invoke("tm", "train", "--model", "lstm", "--data", str(tm_file), "-o", str(tmp_path / "x"), "--llm", "gpt2")
    assert isinstance(r.exception, ConfigError)
    r = _invoke("tm", "evaluate", "--model", "nope", "--data", str(tm_file), "-o", str(tmp_path / "y"))
    assert isinstance(r.exception, ConfigError) and not (tmp_path / "y").exists()


def test_readme_ddpm_tme_train_then_estimate(tmp_path):
    """Issue 16 item 11: the README's `tm train --model ddpm-tme` then `tm estimate --model`, through
    the installed console script, with tiny settings (1 epoch, a 4-node series)."""
    from tests.cli.test_tm_errors import SCRIPT, run_cli
    from tests.generators.tm.test_ddpm_tme import toy_routing, toy_series
    from trafficgen.generators.tm.ddpm_tme.model import DDPMTME

    if not SCRIPT.exists():
        pytest.skip("the trafficgen console script is not installed")
    write_tm_npy(toy_series(64), tmp_path / "tm.npy")
    r = run_cli("tm", "train", "--model", "ddpm-tme", "--data", "tm.npy", "-o", "runs/tme", "--epochs", "1",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "runs" / "tme" / "train_summary.json").read_text())
    assert summary["n_val"] == 10 and len(summary["history"]["val_recon_loss"]) == 1
    model = DDPMTME.from_pretrained(tmp_path / "runs" / "tme")
    assert model.n_nodes_ == 4 and model.epochs == 1
    A = toy_routing()
    np.savetxt(tmp_path / "Y.csv", toy_series(5, seed=3).flat @ A, delimiter=",")
    np.savetxt(tmp_path / "A.csv", A, delimiter=",")
    r = run_cli("tm", "estimate", "--model", "runs/tme", "--link-loads", "Y.csv", "--routing", "A.csv",
                "-o", "est.npy", "--n-init", "32", "--n-starts", "2", "--n-opt", "1", "--steps", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert np.load(tmp_path / "est.npy").shape == (5, 4, 4)


def test_forecast_steps_samples_max_origins(tm_file, tmp_path):
    """Issue 16 item 22: --steps (DDIM steps), --samples (LEAD's point = their median, one pass) and
    --max-origins (evenly spaced test origins, the persistence baseline on the same ones)."""
    from trafficgen.generators.tm.lead import LeadForecaster

    series = np.load(tm_file)
    lead = LeadForecaster(t_in=6, horizons=(1, 2), d_v=4, n_res_blocks=1, d_model=16, adapter_rank=2,
                          unet_channels=(8, 16), layers_per_block=1, batch_size=8, epochs=1, max_train_windows=16,
                          ablations=("no_llm",), progress=False)
    lead.fit(TMSeries(series[:112], ["a", "b", "c"], 3600.0, "bytes"))
    lead.save_pretrained(tmp_path / "lead")
    out = tmp_path / "fc"
    r = _invoke("tm", "forecast", "--model", str(tmp_path / "lead"), "--data", str(tm_file), "-o", str(out),
                "--t-in", "6", "--steps", "2", "--samples", "2", "--max-origins", "3")
    assert r.exit_code == 0, r.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_origins"] == 3 and metrics["n_test_origins"] == 160 - 136 - 2
    assert metrics["n_inference_steps"] == 2 and metrics["n_samples"] == 2
    assert metrics["baseline"]["n_origins"] == 3
    prob = metrics["baselines"][1]  # probabilistic persistence, same origins and K
    assert prob["model"] == "persistence-prob" and prob["n_origins"] == 3 and prob["n_samples"] == 2
    assert "crps_mbps" in metrics["metrics"]["1"] and "width_90_mbps" in prob["metrics"]["1"]
    assert "| persistence-prob |" in r.output and "CRPS / persistence-prob" in r.output
    with np.load(out / "forecasts.npz") as z:
        assert z["origins"].tolist() == [136, 146, 157]
        np.testing.assert_array_equal(z["point"], np.median(z["samples"], axis=1))
        lead.n_inference_steps = 2
        np.testing.assert_array_equal(z["samples"], lead.predict_samples(series, z["origins"], [1, 2], 2,
                                                                         random_state=0))
    r = _invoke("tm", "evaluate", "--model", str(tmp_path / "lead"), "--data", str(tm_file), "-o",
                str(tmp_path / "ev"), "--t-in", "6", "--steps", "2", "--samples", "2")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["n_origins"] == 22  # < LEAD's default 200
    r = _invoke("tm", "evaluate", "--model", str(tmp_path / "lead"), "--data", str(tm_file), "-o",
                str(tmp_path / "ev2"), "--t-in", "6", "--steps", "2", "--max-origins", "2")
    assert r.exit_code == 0, r.output  # no --samples: a probabilistic model is still scored with its own K
    ev2 = json.loads((tmp_path / "ev2" / "metrics.json").read_text())
    assert ev2["n_samples"] == lead.n_samples and "coverage_90" in ev2["metrics"]["2"]
    r = _invoke("tm", "forecast", "--model", "persistence", "--data", str(tm_file), "-o", str(tmp_path / "p"),
                "--steps", "2")
    assert isinstance(r.exception, ConfigError) and not (tmp_path / "p").exists()


def test_train_gradient_accumulation_and_num_processes_options(tm_file, tmp_path):
    """Issue 19: --gradient-accumulation-steps reaches the models that train with the shared loop
    (one optimiser step per K batches); it and --num-processes are refused, before any work, for
    models that do not train there."""
    runs = {}
    for k in (1, 2):
        out = tmp_path / f"lstm{k}"
        args = ["--gradient-accumulation-steps", str(k)] if k > 1 else []
        r = _invoke("tm", "train", "--model", "lstm", "--data", str(tm_file), "-o", str(out), "--t-in", "4",
                    "--horizons", "1,2", "--epochs", "2", "--device", "cpu", *args)
        assert r.exit_code == 0, r.output
        runs[k] = json.loads((out / "train_summary.json").read_text())["history"]
        assert json.loads((out / "config.json").read_text())["params"]["gradient_accumulation_steps"] == k
    # 112 training matrices: 107 windows, 4 batches of 32 an epoch
    assert runs[1]["steps"] == 2 * 4 and runs[2]["steps"] == 2 * 2 and "processes" not in runs[2]
    assert runs[1]["train_loss"][0] != runs[2]["train_loss"][0]
    for bad, match in ((["--gradient-accumulation-steps", "2"], "takes no 'gradient-accumulation-steps'"),
                       (["--num-processes", "2"], "does not train data-parallel")):
        r = _invoke("tm", "train", "--model", "persistence", "--data", str(tm_file), "-o", str(tmp_path / "p"), *bad)
        assert isinstance(r.exception, ConfigError) and match in str(r.exception), r.output
        assert not (tmp_path / "p").exists()
    for bad in (["--num-processes", "0"], ["--gradient-accumulation-steps", "0"]):
        r = _invoke("tm", "train", "--model", "lstm", "--data", str(tm_file), "-o", str(tmp_path / "q"), *bad)
        assert isinstance(r.exception, ConfigError) and ">= 1" in str(r.exception), r.output
        assert not (tmp_path / "q").exists()


def test_data_parallel_command_line_is_the_given_options():
    """The launched processes re-run `tm train` with exactly the options given (no --num-processes)."""
    from trafficgen.cli.data_parallel import command_path, given_arguments

    seen = {}
    app_ = typer.Typer()
    tm_ = typer.Typer()
    app_.add_typer(tm_, name="tm")

    @tm_.command("train")
    def train(ctx: typer.Context, model: str = typer.Option(..., "--model", "-m"),
              ablation: list[str] | None = typer.Option(None, "--ablation"),
              timing: bool = typer.Option(False, "--timing/--no-timing"),
              epochs: int | None = typer.Option(None, "--epochs"),
              num_processes: int = typer.Option(1, "--num-processes")) -> None:
        seen["argv"] = command_path(ctx) + given_arguments(ctx)

    @tm_.command("other")
    def other() -> None:  # a second command, so that `tm train` is a sub-command
        pass

    r = CliRunner().invoke(app_, ["tm", "train", "-m", "lstm", "--ablation", "a", "--ablation", "b", "--no-timing",
                                  "--num-processes", "2"])
    assert r.exit_code == 0, r.output
    assert seen["argv"] == ["tm", "train", "--model", "lstm", "--ablation", "a", "--ablation", "b", "--no-timing"]
