"""Every shell line of README.md and docs/*.md, and how a test runs it (tests/docs/test_shell_lines.py).

A line in a ```bash (or sh, shell, console) fence of the docs must be a key here, written
exactly as in the markdown without its trailing comment (a command split over lines with
`\\` is joined with single spaces). Lines in ```bash run fences need no entry: the guide
test runs those blocks as they are (tests/docs/test_guides.py).

- `AsWritten`: the test runs the line exactly as written, in a folder where the files it
  names exist (`needs`: the stand-ins the test makes, small), with `extra` arguments
  appended to keep it quick (fewer iterations, smaller inputs).
- `StandIn`: the line cannot run as written in a test (it sets up a machine, never ends,
  or needs the network); `script` runs what stands in for it and `why` says so.
- `CoveredBy`: another test runs this line's work: `test` is "tests/path.py::test_name".

A line that needs a file a user brings says so in the markdown with a trailing
`# needs: ...` comment, and its entry runs it on a stand-in (`needs`).

Stand-ins (`needs`), made by the test in its working folder:
  demo        runs/demo from `maskrcnn demo --output runs/demo` at toy size
  photo       photo.jpg, a generated shapes picture
  coco_file   maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth: random weights in torchvision's layout
  coco_sets   train.json + train_images/, val.json + val_images/ (generated shapes)
  cells       cells/{train,val}/{images,labels}/: generated nuclei label images
  cells_json  cells plus train.json and val.json from `maskrcnn import-masks`
  cells_run   cells_json plus runs/cells from a 2-iteration nuclei training
  slide       slide.tif (a 512 px shapes canvas) and model.pt (the toy demo model)
  demo_predictions  demo plus runs/predict/predictions.json from `maskrcnn predict`
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AsWritten:
    needs: tuple[str, ...] = ()
    extra: str = ""
    folder: str = "."  # where it runs, inside the test's working folder (lines that reuse names)


@dataclass(frozen=True)
class StandIn:
    script: str
    why: str
    needs: tuple[str, ...] = ()
    folder: str = "."


@dataclass(frozen=True)
class CoveredBy:
    test: str


def serve_check(args: str) -> str:
    """Start `maskrcnn serve ARGS` on a free port, wait for /health to answer, stop it."""
    return (
        'port=$(python -c "import socket; s = socket.socket(); s.bind((\'127.0.0.1\', 0)); print(s.getsockname()[1])")\n'
        f"maskrcnn serve {args} --port $port --threads 1 & server=$!\n"
        "trap 'kill $server' EXIT\n"
        "for _ in $(seq 120); do curl -sf http://127.0.0.1:$port/health >/dev/null && break; sleep 1; done\n"
        "curl -sf http://127.0.0.1:$port/health | grep -q '\"status\":\"ok\"'\n"
    )


TOY_TRAIN = "--set solver.max_iter=2 --set solver.warmup_iters=1 --threads 1"
TOY_FINETUNE = (
    "--set solver.max_iter=1 --set solver.warmup_iters=1 --set solver.steps=[1] --set model.transform.min_size=[128] "
    "--set model.transform.max_size=160 --threads 1"
)
TOY_NUCLEI = (
    f"{TOY_TRAIN} --set model.transform.fixed_scale=1.0 --set data.augment.crop_size=96 --set model.test_augment=none"
)

REGISTRY: dict[str, AsWritten | StandIn | CoveredBy] = {
    # --- set-up ---------------------------------------------------------------------------
    "make demo": StandIn(
        script='grep -q "maskrcnn demo --output runs/demo$" "$MASKRCNN_REPO/Makefile" && test -s runs/demo/model_final.pt',
        why="the Makefile's demo target is `maskrcnn demo --output runs/demo` (after the install), which the "
            "test's `demo` stand-in runs at toy size",
        needs=("demo",),
    ),
    "make test": StandIn(
        script='grep -q "pytest -q tests" "$MASKRCNN_REPO/Makefile"',
        why="it is this test suite",
    ),
    "source .venv/bin/activate": StandIn(
        script='grep -q "^VENV := .venv$" "$MASKRCNN_REPO/Makefile" && test -f "$(dirname "$(command -v python)")/activate"',
        why="the Makefile creates .venv; the test runs inside a virtual environment that has bin/activate",
    ),
    "make pictures": CoveredBy("tests/docs/test_doc_pictures.py::test_every_picture_was_drawn_from_the_current_recipe"),
    # --- README quickstart ----------------------------------------------------------------
    "maskrcnn predict photo.jpg --weights maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth --config maskrcnn_resnet50_fpn "
    "--output runs/predict": AsWritten(needs=("photo", "coco_file"), extra="--threads 1 --quiet"),
    "maskrcnn train --config finetune_coco --init-weights maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth --output runs/mine "
    "--set data.train.annotations=train.json --set data.train.images=train_images "
    "--set data.val.annotations=val.json --set data.val.images=val_images": AsWritten(
        needs=("coco_file", "coco_sets"), extra=TOY_FINETUNE),
    "maskrcnn import-masks cells/train --layout labels --category nucleus --output train.json": AsWritten(needs=("cells",), folder="masks"),
    "maskrcnn import-masks cells/val --layout labels --category nucleus --output val.json": AsWritten(needs=("cells",), folder="masks"),
    "maskrcnn train --config nuclei --output runs/cells --set data.train.kind=coco --set data.train.annotations=train.json "
    "--set data.train.images=cells/train/images --set data.val.kind=coco --set data.val.annotations=val.json "
    "--set data.val.images=cells/val/images": AsWritten(needs=("cells_json",), extra=TOY_NUCLEI, folder="masks"),
    "maskrcnn evaluate --weights runs/cells/model_final.pt --annotations val.json --images cells/val/images": AsWritten(
        needs=("cells_run",), extra="--threads 1 --quiet", folder="masks"),
    "maskrcnn evaluate --weights runs/demo/model_final.pt --annotations runs/demo/data/val.json "
    "--images runs/demo/data/images --report runs/report": AsWritten(needs=("demo",), extra="--threads 1 --quiet"),
    "maskrcnn serve --weights runs/demo/model_final.pt": StandIn(
        script=serve_check("--weights runs/demo/model_final.pt"),
        why="a server runs until stopped: the test starts it on a free port, asks /health, stops it",
        needs=("demo",)),
    "maskrcnn export --weights runs/demo/model_final.pt --output model.onnx": AsWritten(needs=("demo",), extra="--threads 1"),
    # --- docs -------------------------------------------------------------------------------
    "maskrcnn analyze augment --config shapes_demo "
    "--set data.augment.vertical_flip=0.5 --set data.augment.transpose=0.5 --set data.augment.scale_jitter=0.8 "
    "--set \"data.augment.scale_range=[0.5,1.5]\" --set data.augment.pad_value=0.3 --set data.augment.min_area=4 "
    "--set data.augment.brightness=0.2 --set data.augment.contrast=0.2 --set data.augment.gamma=0.3 "
    "--set data.augment.blur=0.3 --set data.augment.noise=0.3 --samples 12 --cell 200 --output docs/images": AsWritten(
        extra="--set data.train.num_images=16 --samples 2 --cell 64"),
    "maskrcnn predict slide.tif --weights model.pt --tile 1024 --tile-overlap 128 --label-image": AsWritten(
        needs=("slide",), extra="--threads 1 --quiet"),
    "maskrcnn serve --weights maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth --config maskrcnn_resnet50_fpn --port 8080": StandIn(
        script=serve_check("--weights maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth --config maskrcnn_resnet50_fpn"),
        why="a server runs until stopped, and port 8080 may be taken: the test serves on a free port",
        needs=("coco_file",)),
    "curl -s http://127.0.0.1:8000/health": CoveredBy("tests/serve/test_serve_api.py::test_health"),
    "curl -s -F file=@shapes.png 'http://127.0.0.1:8000/predict?score_threshold=0.7'": CoveredBy(
        "tests/serve/test_serve_api.py::test_score_threshold_keeps_the_higher_scores"),
    "curl -s --data-binary @shapes.png -H 'Content-Type: image/png' 'http://127.0.0.1:8000/predict?file_name=shapes.png'":
        CoveredBy("tests/serve/test_serve_api.py::test_multipart_and_raw_body_give_the_predictors_detections"),
    "maskrcnn predict 'runs/demo/data/images/val_*.png' --weights runs/demo/model_final.pt --output runs/predict "
    "--score-threshold 0.05": AsWritten(needs=("demo",), extra="--threads 1 --quiet"),
    "maskrcnn evaluate --predictions runs/predict/predictions.json --annotations runs/demo/data/val.json "
    "--images runs/demo/data/images --report runs/report_from_file": AsWritten(needs=("demo_predictions",),
                                                                              extra="--quiet"),
    "python benchmarks/report.py --images 1000": StandIn(
        script='python "$MASKRCNN_REPO/benchmarks/report.py" --images 8',
        why="the benchmark at 8 images instead of 1000"),
    "python benchmarks/tiling_accuracy.py --weights runs/tilebench/demo/model_final.pt --workdir runs/tilebench/final "
    "--overlays --save-canvas --json r.json": StandIn(
        script='python "$MASKRCNN_REPO/benchmarks/tiling_accuracy.py" --weights runs/demo/model_final.pt '
               '--workdir runs/tilebench/final --overlays --save-canvas --json r.json --size 320 --crop 160 '
               '--backgrounds plain --settings 160:32',
        why="the benchmark on the toy demo model and one small canvas", needs=("demo",)),
    "python benchmarks/accuracy.py --recipes nuclei --threads 2 --output runs/pretrain --set train.init_weights= "
    "--set solver.lr=0.01 --set solver.max_time_s=2700 --set solver.max_iter=20000 --set data.val.num_images=32": StandIn(
        script='python "$MASKRCNN_REPO/benchmarks/accuracy.py" --recipes nuclei --threads 1 --output runs/pretrain '
               "--set train.init_weights= --set solver.lr=0.01 --set solver.max_time_s=2700 --set solver.max_iter=20000 "
               "--set data.val.num_images=32 --set solver.max_iter=2 --set solver.warmup_iters=1 "
               "--set data.train.num_images=2 --set data.val.num_images=1 --set data.train.image_size=256 "
               "--set data.val.image_size=256 --set model.test_augment=none",
        why="45 minutes on 200 generated images: the test trains 2 iterations on 2"),
    "python scripts/ship_weights.py runs/pretrain/nuclei/model_final.pt nuclei_synthetic --replace": StandIn(
        script="python - <<'EOF'\n"
               "import os, sys\nfrom pathlib import Path\n"
               "sys.path.insert(0, os.path.join(os.environ['MASKRCNN_REPO'], 'scripts'))\n"
               "import ship_weights\n"
               "ship_weights.WEIGHTS_DIR = Path('shipped')  # not the package's own folder\n"
               "assert ship_weights.main(['runs/demo/model_final.pt', 'nuclei_synthetic', '--replace']) == 0\n"
               "assert Path('shipped/nuclei_synthetic.pt').stat().st_size > 0\n"
               "EOF",
        why="it writes into the package's weights folder: the test writes a toy model into a folder of its own",
        needs=("demo",)),
    # --- extras and formats ----------------------------------------------------------------
    "pip install 'maskrcnn[geo]'": CoveredBy("tests/test_optional_extras.py::test_extras_are_not_base_requirements"),
    "pip install 'maskrcnn[tensorboard]'": CoveredBy("tests/test_optional_extras.py::test_extras_are_not_base_requirements"),
    "pip install -e '.[napari]'": CoveredBy(
        "tests/napari_plugin/test_napari_manifest.py::test_napari_entry_point_and_package_data_name_the_manifest"),
    "napari nuclei.png -w maskrcnn": CoveredBy(
        "tests/napari_plugin/test_napari_widget.py::test_napari_widget_gives_the_label_image_of_maskrcnn_predict"),
    "maskrcnn predict images/ --weights run/model_final.pt --output predictions --geojson": CoveredBy(
        "tests/cli/test_cli_geojson.py::test_predict_geojson_matches_the_predicted_masks"),
    "maskrcnn predict big_orthophoto.tif --weights run/model_final.pt --output predictions --geojson --tile 1024 "
    "--tile-overlap 128": CoveredBy("tests/cli/test_cli_geojson.py::test_predict_geojson_matches_the_predicted_masks"),
    "maskrcnn import-masks labelme_folder --layout labelme --output labelme_folder/annotations.json": CoveredBy(
        "tests/data/test_polygon_import.py::test_cli_import_labelme_with_a_class_list"),
    "maskrcnn import-masks yolo_set --layout yolo --classes yolo_set/data.yaml --output yolo_set/annotations.json":
        CoveredBy("tests/data/test_polygon_import.py::test_cli_import_yolo_and_never_overwrites"),
    "maskrcnn train --config shapes_demo --output runs/shapes --set train.tensorboard=true --set train.eval_period=100":
        CoveredBy("tests/engine/test_tensorboard_log.py::test_tiny_run_writes_scalars_and_pictures"),
    "tensorboard --logdir runs/": CoveredBy("tests/engine/test_tensorboard_log.py::test_tiny_run_writes_scalars_and_pictures"),
    "python benchmarks/serve_load.py --weights runs/demo/model_final.pt --seconds 60 --clients 8 --json serve_load.json":
        CoveredBy("tests/serve/test_serve_load_benchmark.py::test_the_load_benchmark_runs_and_reports"),
    "python benchmarks/onnx_accuracy.py --weights runs/demo/best.pt --annotations runs/demo/data/val.json --images "
    "runs/demo/data/images --keep runs/onnx_accuracy --json benchmarks/results/2026-12-07_onnx_accuracy_demo.json":
        CoveredBy("tests/export/test_onnx_accuracy.py::test_onnx_results_score_as_maskrcnn_evaluate"),
    "maskrcnn evaluate --annotations runs/demo/data/val.json --predictions runs/onnx_accuracy/exact_flips_results.json":
        CoveredBy("tests/export/test_onnx_accuracy.py::test_onnx_results_score_as_maskrcnn_evaluate"),
    "maskrcnn evaluate --annotations runs/demo/data/val.json --images runs/demo/data/images --weights runs/demo/best.pt":
        CoveredBy("tests/cli/test_cli_evaluate.py::test_evaluate_weights_prints_table_and_writes_json"),
}
