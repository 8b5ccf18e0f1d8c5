"""Profiles, classifiers and image loading (issue: foundation)."""

import shutil
from pathlib import Path

import pytest
import torch
import yaml

from advlib import corpora, models, paths, profiles, runtime
from advlib.images import ImageReadError, load_image
from advlib.models import MissingWeightsError
from advlib.store import pixel_sha256


# ----------------------------------------------------------------------------- profiles

@pytest.mark.parametrize("name", ["smoke", "demo", "adaptive"])
def test_shipped_profiles_validate(name):
    p = profiles.load_profile(name)
    assert p["profile"] == name
    assert set(p) == set(profiles.SCHEMA)


def test_paper_profile_needs_imagenet(monkeypatch, tmp_path):
    monkeypatch.delenv(paths.IMAGENET_ENV, raising=False)
    with pytest.raises(profiles.ProfileError, match="imagenet_dir"):
        profiles.load_profile("paper")
    monkeypatch.setenv(paths.IMAGENET_ENV, str(tmp_path))
    assert profiles.load_profile("paper")["imagenet_dir"] == str(tmp_path)


def _write(tmp_path, **changes):
    params = yaml.safe_load(profiles.profile_path("smoke").read_text())
    params.update(changes)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_unknown_key_names_key_and_file(tmp_path):
    path = _write(tmp_path, n_normall=3)
    with pytest.raises(profiles.ProfileError) as e:
        profiles.load_profile(path)
    assert "n_normall" in str(e.value) and str(path) in str(e.value)


def test_wrong_type_names_key_and_file(tmp_path):
    path = _write(tmp_path, n_normal="many")
    with pytest.raises(profiles.ProfileError) as e:
        profiles.load_profile(path)
    assert "'n_normal'" in str(e.value) and str(path) in str(e.value)
    with pytest.raises(profiles.ProfileError, match="'classifiers'"):
        profiles.load_profile(_write(tmp_path, classifiers=[1, 2]))


def test_missing_path_names_key(tmp_path):
    path = _write(tmp_path, corpus="imagenet", imagenet_dir=str(tmp_path / "nowhere"))
    with pytest.raises(profiles.ProfileError, match="imagenet_dir.*nowhere"):
        profiles.load_profile(path)


def test_cli_reports_profile_error(tmp_path, capsys):
    assert profiles.main([str(_write(tmp_path, seed=1.5))]) == 1
    assert "'seed'" in capsys.readouterr().err


# ----------------------------------------------------------------------------- classifiers

def test_registry_names():
    assert {"vgg16", "vgg19", "resnet18", "resnet50", "efficientnet_lite0"} <= set(models.CLASSIFIERS)


def test_classifier_predicts_imagenet_samples(classifier, imagenet_samples):
    images, labels, _ = imagenet_samples
    top5 = models.predict_topk(classifier, images, 5)
    top1_acc = (top5[:, 0] == labels).float().mean().item()
    top5_acc = (top5 == labels[:, None]).any(1).float().mean().item()
    # measured 17/20 top-1, 19/20 top-5 with resize 256 + centre crop 224
    assert top1_acc >= 0.8 and top5_acc >= 0.9, (top1_acc, top5_acc)


def test_classifier_is_pixel_space_eval_module(classifier):
    assert not classifier.training
    x = torch.rand(2, 3, 224, 224)
    out = classifier(x)
    assert out.shape == (2, 1000)
    # variable input sizes work (scaled images are not resized back)
    assert classifier(torch.rand(1, 3, 168, 168)).shape == (1, 1000)
    with pytest.raises(ValueError, match="expected"):
        classifier(torch.rand(3, 224, 224))


def test_missing_torchvision_weights_message(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(MissingWeightsError) as e:
        models.load_classifier("resnet18")
    msg = str(e.value)
    assert "resnet18" in msg and str(tmp_path) in msg and "https://download.pytorch.org" in msg


def test_unknown_classifier():
    with pytest.raises(KeyError, match="known"):
        models.load_classifier("alexnet9")


# ----------------------------------------------------------------------------- images

def test_load_image_preprocesses_to_224(imagenet_samples):
    images, _, items = imagenet_samples
    assert images.dtype == torch.uint8 and images.shape[1:] == (3, 224, 224)
    crops = {c: load_image(items[0].path, c) for c in ("center256", "tl256", "center320")}
    assert all(c.shape == (3, 224, 224) for c in crops.values())
    assert not torch.equal(crops["center256"], crops["tl256"])


def test_224_file_taken_as_is(tmp_path, imagenet_samples):
    from advlib.store import save_image

    img = imagenet_samples[0][0]
    save_image(img, tmp_path / "x.png")
    assert torch.equal(load_image(tmp_path / "x.png"), img)


def test_unreadable_image_names_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"this is not a jpeg")
    with pytest.raises(ImageReadError, match="broken.jpg"):
        load_image(bad)


def _imagenet_like(tmp_path, imagenet_samples, flat: bool):
    _, labels, items = imagenet_samples
    root = tmp_path / ("flat" if flat else "folders")
    root.mkdir()
    lines = []
    for i, it in enumerate(items[:4]):
        name = f"ILSVRC2012_val_{i + 1:08d}.JPEG"
        if flat:
            shutil.copy(it.path, root / name)
            lines.append(f"{name} {it.label}")
        else:
            d = root / f"n{it.label:08d}"
            d.mkdir(exist_ok=True)
            shutil.copy(it.path, d / name)
    corrupt = "ILSVRC2012_val_00000099.JPEG"
    if flat:
        (root / corrupt).write_bytes(b"\xff\xd8 truncated")
        lines.append(f"{corrupt} 1")
        (root / "val.txt").write_text("\n".join(lines) + "\n")
    else:
        (d / corrupt).write_bytes(b"\xff\xd8 truncated")
    return root


@pytest.mark.parametrize("flat", [False, True])
def test_imagenet_reader_both_layouts_reports_corrupt(tmp_path, imagenet_samples, flat):
    root = _imagenet_like(tmp_path, imagenet_samples, flat)
    items = corpora.imagenet_items(root)
    assert len(items) == 5
    images, ok, failures = corpora.read_images(items)
    assert len(ok) == 4 and images.shape == (4, 3, 224, 224)
    assert len(failures) == 1 and "ILSVRC2012_val_00000099.JPEG" in failures[0][1]
    if flat:
        _, labels, _ = imagenet_samples
        assert [it.label for it in ok] == labels[:4].tolist()
    else:  # folder index in sorted order
        assert sorted({it.label for it in ok}) == list(range(len({it.label for it in ok})))


def test_flat_folder_without_labels_explains(tmp_path):
    (tmp_path / "ILSVRC2012_val_00000001.JPEG").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="val.txt"):
        corpora.imagenet_items(tmp_path)


def test_demo_corpus_has_100_inputs_with_sources():
    items = corpora.demo_items(4)
    assert len(items) >= 100
    assert len({it.image_id for it in items}) == len(items)
    assert len({it.source for it in items}) >= 25
    assert sum(it.label_source == "imagenet" for it in items) >= 80


#: The corpus's first photos, whose ids (and so the demo item ids) must not change.
ORIGINAL_PHOTOS = [f"foolbox_imagenet_{i:02d}_{label}" for i, label in enumerate(
    [243, 559, 438, 990, 949, 853, 609, 609, 915, 455, 541, 630, 741, 471, 129, 99, 251, 22, 317, 305])] + [
    f"skimage_{n}" for n in ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field",
                             "motorcycle_left", "motorcycle_right", "retina")] + [
    "matplotlib_grace_hopper", "sklearn_china", "sklearn_flower"]


def test_demo_photos_60_distinct_real_photos_with_licences():
    photos = corpora.demo_photos()
    assert len(photos) >= 60
    assert [p.source_id for p in photos[:len(ORIGINAL_PHOTOS)]] == ORIGINAL_PHOTOS
    assert len({p.source_id for p in photos}) == len(photos)
    assert len({Path(p.path).resolve() for p in photos}) == len(photos)
    hashes = set()
    for p in photos:
        image = load_image(p.path)
        assert image.shape == (3, 224, 224) and image.dtype == torch.uint8, p.source_id
        assert p.package and p.licence, p.source_id
        hashes.add(pixel_sha256(image))
    assert len(hashes) == len(photos), "two demo photos have identical centre crops"
    items = corpora.demo_items(2)
    assert len(items) == 2 * len(photos)
    assert all(it.package and it.licence for it in items)
    assert {it.source: it.licence for it in items} == {p.source_id: p.licence for p in photos}


def test_select_normal_and_manifest(classifier, imagenet_samples):
    images, labels, items = imagenet_samples
    top5 = models.predict_topk(classifier, images, 5)
    keep = corpora.select_normal(top5, list(items))
    assert keep.sum() == (top5 == labels[:, None]).any(1).sum().item()
    df = corpora.manifest(items, images)
    assert len(df) == len(items) and df["sha256"].str.len().eq(64).all()
    assert df["sha256"].nunique() == len(items)


def test_batch_size_auto_and_negative(tmp_path):
    expected = runtime.CPU_BATCH if runtime.resolve_device("auto") == "cpu" else runtime.GPU_BATCH
    assert profiles.load_profile("smoke")["batch_size"] == expected
    with pytest.raises(profiles.ProfileError, match="'batch_size'"):
        profiles.load_profile(_write(tmp_path, batch_size=-1))


def test_load_profile_with_overrides():
    from advlib import run

    p = profiles.load_profile("smoke", attacks_per_image=1, seed=3)
    assert (p["attacks_per_image"], p["seed"]) == (1, 3)
    assert profiles.run_name(p).startswith("smoke-") and profiles.run_name(profiles.load_profile("smoke")) == "smoke"
    with pytest.raises(profiles.ProfileError, match="override of unknown key 'atacks'"):
        profiles.load_profile("smoke", atacks=["fgsm"])
    with pytest.raises(profiles.ProfileError, match="key 'seed' must be int"):
        profiles.load_profile("smoke", seed="zero")
    assert run.parse_args(["demo", "01_dataset", "--set", "attacks_per_image=1", "--set", "attacks=[fgsm, pgd]"]) == \
        ("demo", ["01_dataset"], {"attacks_per_image": 1, "attacks": ["fgsm", "pgd"]})
    with pytest.raises(ValueError, match="KEY=VALUE"):
        run.parse_args(["demo", "--set", "oops"])


def test_corpora_registry_is_the_profile_check():
    for name in corpora.CORPORA:
        if name != "imagenet":  # needs a folder
            assert profiles.load_profile("smoke", corpus=name)["corpus"] == name
    with pytest.raises(profiles.ProfileError, match="unknown corpus 'flickr' \\(known: demo, imagenet"):
        profiles.load_profile("smoke", corpus="flickr")


def test_profiles_name_components_with_their_options():
    q = profiles.load_profile("smoke", attacks={"pgd": {"epsilons": ["4/255", 0.1]}, "fgsm": None},
                            detectors={"svm": {"grid": {"C": [1.0]}}, "lda": None})
    assert q["attacks"] == ["pgd", "fgsm"] and q["attack_options"] == {"pgd": {"epsilons": [4 / 255, 0.1]}}
    assert q["detectors"] == ["svm", "lda"] and q["detector_grids"] == {"svm": {"C": [1.0]}}
    # the committed profiles use the nested form; as flat lists they mean the same
    flat = profiles.load_profile("smoke", attacks=["bim", "pgd", "gradient", "fgsm"],
                               detectors=["svm", "random_forest", "lda", "mlp"])
    assert flat == profiles.load_profile("smoke") and profiles.run_name(flat) == "smoke"
    for bad, match in [({"attacks": {"pgd": {"epsilon": [0.1]}}}, r"attack 'pgd': unknown option\(s\) \['epsilon'\]"),
                       ({"attacks": ["pgdd"]}, "unknown attack 'pgdd'"),
                       ({"detectors": {"svm": {"grid": {"CC": [1]}}}}, r"unknown grid parameter\(s\) \['CC'\]"),
                       ({"detectors": {"svm": {"C": [1]}}}, "only a 'grid' mapping"),
                       ({"attacks": {"pgd": {"epsilons": [0.1]}}, "attack_options": {"pgd": {"epsilons": [0.2]}}},
                        "given in both")]:
        with pytest.raises(profiles.ProfileError, match=match):
            profiles.load_profile("smoke", **bad)


def test_progress_reports_enabled_bars_and_skips_disabled_ones(monkeypatch, tmp_path):
    import json

    state = tmp_path / "progress.json"
    monkeypatch.setenv(runtime.PROGRESS_ENV, str(state))
    assert list(runtime.progress(range(3), desc="quiet", disable=True)) == [0, 1, 2]  # no desc/n: nothing written
    assert not state.exists()
    assert list(runtime.progress(range(3), desc="shards")) == [0, 1, 2]
    written = json.loads(state.read_text())
    assert written["stage"] == "shards" and written["total"] == 3 and written["closed"]


def test_extends_takes_the_base_profile_and_reads_its_run(tmp_path):
    params = profiles.load_profile("adaptive", check=False)
    demo = profiles.load_profile("demo", check=False)
    assert params["extends"] == "demo" and params["notebooks"] == ["05_adaptive"]
    assert {k: v for k, v in params.items() if not k.startswith("adaptive_")} == \
        {**{k: v for k, v in demo.items() if not k.startswith("adaptive_")}, "profile": "adaptive",
         "extends": "demo", "notebooks": ["05_adaptive"]}
    assert profiles.input_params(params)["profile"] == "demo" and profiles.run_name(params) == "adaptive"
    (tmp_path / "loop.yaml").write_text("extends: loop\nprofile: loop\n")
    with pytest.raises(profiles.ProfileError, match="extends"):
        profiles.load_profile(tmp_path / "loop.yaml", check=False)
