"""MegaDescriptor and MiewID (timm): architecture widths and sizes, embedding a batch with random weights,
weights round trips through ``weights=FILE`` and the hub cache, and the missing-weights error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alreid.cli import main as cli_main
from alreid.errors import ConfigError
from alreid.models.backbones import IMAGENET_MEAN, IMAGENET_STD, build_backbone
from alreid.models.timm_backbones import MegaDescriptor, MiewID

from .helpers import write_identity_dataset

#: spec table1_rows 6.1: timm Swin pooled width = 8 x embed_dim (96/96/128/192), input sizes
MEGA = {"T-224": (768, 224), "S-224": (768, 224), "B-224": (1024, 224), "L-224": (1536, 224), "L-384": (1536, 384)}


@pytest.fixture(autouse=True)
def _empty_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("ALREID_CACHE_DIR", str(tmp_path / "feature-cache"))


@pytest.mark.parametrize("variant", list(MEGA))
def test_megadescriptor_variants_have_the_published_widths_and_sizes(variant):
    with torch.device("meta"):  # architecture only: no memory, no time
        m = MegaDescriptor(weights="none", variant=variant)
    dim, side = MEGA[variant]
    assert m.feature_dim == dim and m.neck.num_features == dim
    assert tuple(m.default_size) == (side, side)
    assert (m.input_mean, m.input_std) == (IMAGENET_MEAN, IMAGENET_STD)


def test_miewid_architecture_and_preprocessing():
    with torch.device("meta"):
        m = MiewID(weights="none")
    assert m.feature_dim == 2152 and tuple(m.default_size) == (440, 440)
    assert m.pooling == "gem" and m.neck.bias.requires_grad  # GeM + its own trainable BN (use_fc=False)
    assert (m.input_mean, m.input_std) == (IMAGENET_MEAN, IMAGENET_STD)


@pytest.fixture(scope="module")
def tiny_mega():
    return build_backbone("megadescriptor:T-224", weights="none", seed=0).eval()


def test_megadescriptor_embeds_a_batch_and_rejects_other_sizes(tiny_mega):
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        f = tiny_mega(x)
        # the forward is timm's own pooled feature (final LayerNorm, token mean) through the identity neck
        ref = tiny_mega.body.forward_head(tiny_mega.body.forward_features(x), pre_logits=True)
    assert f.shape == (2, 768) and torch.isfinite(f).all()
    torch.testing.assert_close(f, ref / np.sqrt(1 + tiny_mega.neck.eps), rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match="takes 224x224"):
        tiny_mega(torch.zeros(1, 3, 256, 128))
    with pytest.raises(ConfigError, match="pools by token average"):
        MegaDescriptor(weights="none", pooling="gem", variant="T-224")


def test_megadescriptor_timm_state_dict_loads_back_identically(tiny_mega, tmp_path):
    """A bare timm Swin state dict (what the hub holds), as safetensors, through weights=FILE."""
    from safetensors.torch import save_file

    body = {k: v.contiguous() for k, v in tiny_mega.body.state_dict().items()}
    save_file(body, str(tmp_path / "mega.safetensors"))
    other = build_backbone("megadescriptor:T-224", weights=str(tmp_path / "mega.safetensors"), seed=1).eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(tiny_mega(x), other(x))
    assert other.weights_id.startswith("file:")
    with pytest.raises(ConfigError, match="wrong shapes|unexpected keys|missing"):  # another size
        build_backbone("megadescriptor:B-224", weights=str(tmp_path / "mega.safetensors"))


def _miewid_with_trained_neck(seed: int) -> MiewID:
    m = build_backbone("miewid", weights="none", pooling="auto", seed=seed)
    with torch.no_grad():  # a neck and GeM p unlike their initial values, so their loading is tested
        m.neck.running_mean.uniform_(-0.1, 0.1)
        m.neck.running_var.uniform_(0.5, 2.0)
        m.neck.weight.uniform_(0.5, 1.5)
        m.neck.bias.uniform_(-0.1, 0.1)
        m.pool.p.fill_(2.5)
    return m.eval()


def test_miewid_checkpoints_load_back_identically(tmp_path):
    """Our own state dict (torch file) and MiewIdNet's names (``backbone.``/``pooling.p`` [1]/``bn.``, safetensors)."""
    from safetensors.torch import save_file

    src = _miewid_with_trained_neck(0)
    torch.save(src.state_dict(), tmp_path / "ours.pt")
    miew = {f"backbone.{k}": v.contiguous() for k, v in src.body.state_dict().items()}
    miew.update({f"bn.{k}": v.contiguous() for k, v in src.neck.state_dict().items()})
    miew["pooling.p"] = src.pool.p.detach().reshape(1).clone()
    miew["final.weight"] = torch.zeros(3, 2152)  # an ArcFace head: not part of the embedding
    save_file(miew, str(tmp_path / "model.safetensors"))
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))  # a CNN takes a small input
    with torch.no_grad():
        want = src(x)
        assert want.shape == (2, 2152) and torch.isfinite(want).all()
        for path in (tmp_path / "ours.pt", tmp_path / "model.safetensors"):
            got = build_backbone("miewid", weights=str(path), pooling="auto", seed=5).eval()(x)
            assert torch.equal(got, want), path.name
    # the same file found in the local hub cache under the authors' repository id
    snap = tmp_path / "hub" / "models--conservationxlabs--miewid-msv2" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "model.safetensors").write_bytes((tmp_path / "model.safetensors").read_bytes())
    hub = build_backbone("miewid", weights="imagenet", pooling="auto").eval()
    assert hub.weights_id.startswith("hub:models--conservationxlabs--miewid-msv2")
    with torch.no_grad():
        assert torch.equal(hub(x), want)


def test_missing_weights_is_one_line_naming_both_options():
    for name in ("megadescriptor", "megadescriptor:T-224", "miewid:msv3"):
        with pytest.raises(ConfigError) as err:
            build_backbone(name, weights="imagenet")
        msg = str(err.value)
        assert "\n" not in msg and "--weights FILE" in msg and "--weights none" in msg and "hub cache" in msg
    with pytest.raises(ConfigError, match="no variant 'XL'"):
        build_backbone("megadescriptor:XL", weights="none")
    with pytest.raises(ConfigError, match="does not exist"):
        build_backbone("miewid", weights="/nonexistent/file.safetensors")


def test_features_command_without_weights_stops_with_one_line(tmp_path, capsys):
    write_identity_dataset(tmp_path / "ds", n_ids=2, per_id=2)
    rc = cli_main(["features", "--dataset", f"metadata:{tmp_path / 'ds'}", "--backbone", "megadescriptor"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "--weights FILE" in err and "--weights none" in err


def test_miewid_inference_path_keeps_timm_batchnorm_activations():
    """Feature extraction folds BatchNorm2d into convolutions; timm's BatchNormAct2d carries an activation
    and must stay as it is, so the folded copy computes the model's own eval forward."""
    from timm.layers import BatchNormAct2d

    from alreid.models.backbones import fold_batchnorm

    m = build_backbone("miewid", weights="none", pooling="auto", seed=0).eval()
    x = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(3))
    for net in (m, m.stage_list()[0]):  # the stem is Sequential(conv, BatchNormAct2d): adjacency would pair them
        folded = fold_batchnorm(net)
        n_bnact = sum(isinstance(x, BatchNormAct2d) for x in net.modules())
        assert n_bnact > 0 and sum(isinstance(x, BatchNormAct2d) for x in folded.modules()) == n_bnact
        with torch.no_grad():
            want = net(x)
            torch.testing.assert_close(folded(x), want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))
