import json

import numpy as np
from typer.testing import CliRunner

from tests.generators.tm.test_ddpm_tme import toy_routing, toy_series
from trafficgen.cli.main import app
from trafficgen.estimation.classic import tomogravity_estimate
from trafficgen.generators.tm.ddpm_tme.model import DDPMTME


def _inputs(tmp_path):
    X = toy_series(6, seed=2).flat
    A = toy_routing()
    np.savetxt(tmp_path / "Y.csv", X @ A, delimiter=",")
    np.savetxt(tmp_path / "A.csv", A, delimiter=",")
    return X, A


def test_estimate_tomogravity(tmp_path):
    X, A = _inputs(tmp_path)
    r = CliRunner().invoke(app, ["tm", "estimate", "--method", "tomogravity", "--link-loads", str(tmp_path / "Y.csv"),
                                 "--routing", str(tmp_path / "A.csv"), "-o", str(tmp_path / "est.npy")])
    assert r.exit_code == 0, r.output
    est = np.load(tmp_path / "est.npy")
    assert est.shape == (6, 4, 4)
    Y = np.loadtxt(tmp_path / "Y.csv", delimiter=",")
    np.testing.assert_allclose(est.reshape(6, -1), tomogravity_estimate(Y, A))
    assert json.loads((tmp_path / "est.json").read_text())["method"] == "tomogravity"


def test_synthesize_and_estimate_ddpm(tmp_path):
    _inputs(tmp_path)
    m = DDPMTME(latent_dim=8, hidden_dim=16, width=16, n_blocks=1, epochs=1, pretrain_epochs=1,
                sampling_steps=2).fit(toy_series(32))
    m.save_pretrained(tmp_path / "m")
    runner = CliRunner()
    r = runner.invoke(app, ["tm", "synthesize", "--model", str(tmp_path / "m"), "-n", "5", "-o", str(tmp_path / "s.npy")])
    assert r.exit_code == 0, r.output
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), m.sample(5, random_state=0).values)
    r = runner.invoke(app, ["tm", "estimate", "--model", str(tmp_path / "m"), "--link-loads", str(tmp_path / "Y.csv"),
                            "--routing", str(tmp_path / "A.csv"), "-o", str(tmp_path / "e.npy"),
                            "--n-init", "4", "--n-opt", "1", "--steps", "2"])
    assert r.exit_code == 0, r.output
    Y = np.loadtxt(tmp_path / "Y.csv", delimiter=",")
    ref = m.estimate(Y, toy_routing(), n_init=4, n_opt=1, steps=2, batch_size=64)
    np.testing.assert_allclose(np.load(tmp_path / "e.npy").reshape(6, -1), ref)
    r = runner.invoke(app, ["tm", "estimate", "--method", "nope", "--link-loads", str(tmp_path / "Y.csv"),
                            "--routing", str(tmp_path / "A.csv"), "-o", str(tmp_path / "x.npy")])
    assert r.exit_code != 0 and not (tmp_path / "x.npy").exists()
