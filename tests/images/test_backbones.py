"""Backbones: the packaged EfficientNet-Lite0 weights really load, ResNet-50 says where weights come from."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from alreid.datasets.images import resize_rgb
from alreid.errors import ConfigError
from alreid.models.backbones import EfficientNetLite0, ResNet50, TinyCNN, build_backbone, fold_batchnorm
from alreid.models.transforms import InputSpec

from .helpers import SHARED

CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def _chelsea(model, size=224) -> torch.Tensor:
    data = pytest.importorskip("skimage.data", reason="scikit-image provides the test photo")
    img = resize_rgb(Image.fromarray(data.chelsea()), (size, size))
    return InputSpec((size, size), model.input_mean, model.input_std).normalise(img[None])


def test_lite0_imagenet_weights_classify_a_cat():
    model = EfficientNetLite0(classifier=True).eval()
    with torch.no_grad():
        probs = model.imagenet_logits(_chelsea(model)).softmax(1)[0]
    assert int(probs.argmax()) in CAT_CLASSES
    assert float(probs[list(CAT_CLASSES)].sum()) > 0.8
    assert model.weights_id == "imagenet" and model.feature_dim == 1280


def test_lite0_random_weights_do_not_know_cats():
    torch.manual_seed(0)
    model = EfficientNetLite0(weights="none", classifier=True).eval()
    with torch.no_grad():
        probs = model.imagenet_logits(_chelsea(model)).softmax(1)[0]
    assert float(probs[list(CAT_CLASSES)].sum()) < 0.2


def test_lite0_input_normalisation_is_tf_lite_style():
    model = EfficientNetLite0()
    x = InputSpec((2, 2), model.input_mean, model.input_std).normalise(np.array([[[[0, 127, 255]] * 2] * 2],
                                                                                 np.uint8))
    assert torch.allclose(x[0, :, 0, 0], torch.tensor([-127 / 128, 0.0, 1.0]), atol=1e-6)


def test_lite0_matches_the_shared_reference_embeddings():
    """The shared nyala file holds Lite0 features at 224 px, ImageNet-style resize + centre crop."""
    ref_file = SHARED / "nyala" / "embeddings_efficientnet_lite0_imagenet.npz"
    if not ref_file.is_file():
        pytest.skip(f"{ref_file} is absent (shared real data not checked out)")
    with np.load(ref_file) as z:
        ref, paths = z["features"].astype(np.float32), z["path"]
    rows = np.arange(0, len(paths), 250)
    model = EfficientNetLite0().eval()
    spec = InputSpec((224, 224), model.input_mean, model.input_std, resize="center_crop")
    imgs = np.stack([resize_rgb(Image.open(SHARED / "nyala" / paths[i]).convert("RGB"), (224, 224), "center_crop")
                     for i in rows])
    with torch.no_grad():
        ours = model.pooled(spec.normalise(imgs)).numpy()
    cos = (ours * ref[rows]).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref[rows], axis=1)
    assert cos.min() > 0.97, cos


def test_resnet50_without_weights_names_the_options(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty-hub"))
    with pytest.raises(ConfigError) as err:
        ResNet50()
    msg = str(err.value)
    assert "--weights FILE" in msg and "efficientnet_lite0" in msg and "weights=none" in msg
    assert str(tmp_path / "empty-hub") in msg
    with pytest.raises(ConfigError, match="does not exist"):
        ResNet50(weights=str(tmp_path / "missing.pth"))


def test_resnet50_spcl_form_and_weights_from_file(tmp_path, monkeypatch):
    torch.manual_seed(0)
    from torchvision.models import resnet50

    ref = resnet50(weights=None)
    torch.save({"state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}}, tmp_path / "r50.pth")
    model = ResNet50(weights=str(tmp_path / "r50.pth")).eval()
    assert torch.equal(model.body[0].weight, ref.conv1.weight)
    assert model.weights_id.startswith("file:")
    assert model.body[7][0].conv2.stride == (1, 1) and model.body[7][0].downsample[0].stride == (1, 1)
    assert model.features(torch.zeros(1, 3, 256, 128)).shape == (1, 2048, 16, 8)  # last stride 1: 1/16
    assert not model.neck.bias.requires_grad and model.neck.weight.requires_grad
    # the cached checkpoint is found in the torch hub cache
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "r50.pth").rename(tmp_path / "hub" / "checkpoints" / "resnet50-0676ba61.pth")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    assert ResNet50().weights_id == "imagenet:resnet50-0676ba61.pth"
    with pytest.raises(ConfigError, match="not a torchvision ResNet-50"):
        torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "bad.pth")
        ResNet50(weights=str(tmp_path / "bad.pth"))


@pytest.mark.parametrize("name", ["efficientnet_lite0", "tiny"])
def test_batchnorm_folding_preserves_outputs(name):
    torch.manual_seed(0)
    model = build_backbone(name, weights="none")
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    model.eval()
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(2, 3, 48, 40)
    with torch.no_grad():
        assert torch.allclose(model(x), folded(x), atol=1e-3, rtol=1e-3)


def test_frozen_stages_keep_weights_and_statistics():
    torch.manual_seed(0)
    model = TinyCNN()
    model.freeze_stages(2)
    frozen = [p for s in model.stage_list()[:2] for p in s.parameters()]
    assert all(not p.requires_grad for p in frozen)
    bn = model.stage_list()[0][1]
    before = (bn.running_mean.clone(), [p.clone() for p in frozen])
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model(torch.randn(4, 3, 32, 32)).pow(2).mean().backward()
    opt.step()
    assert torch.equal(bn.running_mean, before[0])
    assert all(torch.equal(a, b) for a, b in zip(frozen, before[1]))
    assert model.stage_list()[3][1].running_mean.abs().sum() > 0  # later stages do train
    with pytest.raises(ConfigError, match="frozen_stages"):
        model.freeze_stages(9)


def test_tiny_has_no_pretrained_weights():
    with pytest.raises(ConfigError, match="no pretrained weights"):
        TinyCNN(weights="imagenet")
    assert build_backbone("tiny").weights_id == "random"  # 'imagenet' default means random for tiny
