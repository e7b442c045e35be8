import pytest
import torch
import torchvision

from unreid.config import ModelConfig
from unreid.models import weights as weights_mod
from unreid.models.pooling import GeM, build_pooling
from unreid.models.reid_model import build_model
from unreid.models.weights import PretrainedWeightsError


@pytest.mark.parametrize("arch,dim", [("resnet18", 512), ("resnet50", 2048)])
def test_last_stride_one_doubles_the_map_and_output_is_unit(arch, dim):
    model = build_model(ModelConfig(arch=arch, pretrained="none")).eval()
    x = torch.randn(2, 3, 64, 32)
    assert model.feature_map(x).shape[-2:] == (4, 2)  # 64/16 × 32/16 with last stride 1
    out = model(x)
    assert out.shape == (2, dim)
    assert torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)
    strided = build_model(ModelConfig(arch=arch, pretrained="none", last_stride=2)).eval()
    assert strided.feature_map(x).shape[-2:] == (2, 1)


def test_neck_bias_is_frozen():
    model = build_model(ModelConfig(arch="resnet18", pretrained="none"))
    assert not model.neck.bias.requires_grad and model.neck.weight.requires_grad


def test_gem_is_avg_at_p1_and_tends_to_max():
    x = torch.rand(2, 3, 5, 4) + 0.01
    gem1 = GeM(1.0)
    assert torch.allclose(gem1(x), x.mean(dim=(2, 3), keepdim=True), atol=1e-6)
    gem_big = GeM(200.0)
    assert torch.allclose(gem_big(x), x.amax(dim=(2, 3), keepdim=True), rtol=0.02)
    assert build_pooling("gem").p.requires_grad
    with pytest.raises(ValueError, match="available"):
        build_pooling("median")


def test_local_weights_file_loads(tmp_path):
    donor = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r18.pth"
    torch.save(donor.state_dict(), path)
    model = build_model(ModelConfig(arch="resnet18", pretrained=str(path)))
    assert torch.equal(model.backbone.conv1.weight, donor.conv1.weight)


def test_wrong_weights_file_is_a_clear_error(tmp_path):
    path = tmp_path / "r50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    with pytest.raises(PretrainedWeightsError, match="do not fit"):
        build_model(ModelConfig(arch="resnet18", pretrained=str(path)))
    with pytest.raises(PretrainedWeightsError, match="no such file"):
        build_model(ModelConfig(arch="resnet18", pretrained=str(tmp_path / "missing.pth")))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainedWeightsError, match="not a readable"):
        build_model(ModelConfig(arch="resnet18", pretrained=str(junk)))


def test_offline_imagenet_fails_fast_with_instructions(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def refuse(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    with pytest.raises(PretrainedWeightsError) as info:
        weights_mod.imagenet_state_dict("resnet18")
    message = str(info.value)
    assert "resnet18-f37072fd.pth" in message and str(tmp_path) in message
    assert "model.pretrained=none" in message


def test_pre_041_file_without_bn_counters_and_a_training_save_load(tmp_path):
    """torchvision's V1 files have no `num_batches_tracked`; old `.pth.tar` saves wrap a
    `state_dict` beside other entries."""
    source = torchvision.models.resnet18(weights=None)
    state = {k: v for k, v in source.state_dict().items() if "num_batches_tracked" not in k}
    state["layer3.1.bn2.running_var"] = torch.rand(256) + 0.5  # not the init value
    path = tmp_path / "old.pth.tar"
    torch.save({"state_dict": state, "epoch": 90, "best_prec1": 77.1}, path)
    model = build_model(ModelConfig(arch="resnet18", pretrained=str(path)))
    torch.testing.assert_close(
        model.backbone.layer3[1].bn2.running_var, state["layer3.1.bn2.running_var"]
    )
