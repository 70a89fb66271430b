"""TensorBoard as its users meet it: the real server on loopback, asked over HTTP for what a short run logged."""

from __future__ import annotations

import json
import queue
import re
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SYNTHETIC_DATA_ARGS

HOST = "127.0.0.1"
STARTUP_SECONDS = 60
REQUEST_SECONDS = 10
# Loopback only: never route these requests through a proxy from the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _pipe_lines(stream, lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


@contextmanager
def tensorboard_server(logdir: Path) -> Iterator[str]:
    """Start ``tensorboard`` on 127.0.0.1 with a port the OS picks; yield its base URL; always stop it."""
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", HOST, "--port", "0"]
    command += ["--load_fast", "false", "--reload_interval", "1"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_pipe_lines, args=(process.stdout, lines), daemon=True).start()
    try:
        deadline, seen = time.monotonic() + STARTUP_SECONDS, []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or process.poll() is not None:
                pytest.fail("TensorBoard did not start:\n" + "".join(seen))
            try:
                line = lines.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                continue
            seen.append(line)
            match = re.search(rf"http://{re.escape(HOST)}:(\d+)/", line)
            if match:
                yield f"http://{HOST}:{match.group(1)}"
                return
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def http(url: str, body: dict[str, Any] | None = None) -> bytes:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    with _opener.open(request, timeout=REQUEST_SECONDS) as response:
        return response.read()


def http_json(url: str, body: dict[str, Any] | None = None) -> Any:
    return json.loads(http(url, body))


def query(base: str, route: str, **params: str) -> str:
    return f"{base}{route}?{urllib.parse.urlencode(params)}"


def poll(fetch: Callable[[], Any], ready: Callable[[Any], bool], seconds: float = STARTUP_SECONDS) -> Any:
    """TensorBoard loads event files in the background: ask again until the answer is complete."""
    deadline = time.monotonic() + seconds
    while True:
        answer = fetch()
        if ready(answer) or time.monotonic() > deadline:
            return answer
        time.sleep(0.5)


def test_tensorboard_server_serves_scalars_images_histograms_and_hparams(
    run_cli, synthetic_mnist_dir: Path, tmp_path: Path
) -> None:
    run_cli(
        [
            "fit",
            *SYNTHETIC_DATA_ARGS,
            "--data.data_dir",
            synthetic_mnist_dir,
            "--model.hidden_sizes",
            "[32, 32]",
            "--trainer.max_epochs",
            "1",
            "--trainer.log_every_n_steps",
            "2",
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.logger.init_args.name",
            "short",
        ]
    )
    run = "short/version_0"
    with tensorboard_server(tmp_path / "logs") as base:
        scalar_tags = poll(
            lambda: http_json(f"{base}/data/plugin/scalars/tags"),
            lambda tags: "test/acc" in tags.get(run, {}),
        )
        assert run in http_json(f"{base}/data/runs")

        # Scalars: the metrics and the diagnostics, with values.
        expected_scalars = {"train/loss", "val/acc", "val/loss", "test/acc", "test/loss"}
        expected_scalars |= {f"grad_norm/layer_{index}" for index in range(3)}
        expected_scalars |= {f"activations/{stat}/layer_{i}" for stat in ("mean_abs", "dead_fraction") for i in (0, 1)}
        assert expected_scalars <= set(scalar_tags[run])
        test_acc = http_json(query(base, "/data/plugin/scalars/scalars", run=run, tag="test/acc"))
        assert len(test_acc) == 1 and 0.0 <= test_acc[0][2] <= 1.0
        grad_norms = http_json(query(base, "/data/plugin/scalars/scalars", run=run, tag="grad_norm/layer_0"))
        assert [step for _, step, _ in grad_norms] == [1, 3] and all(value > 0 for _, _, value in grad_norms)

        # Histograms of weights, gradients and activations.
        histogram_tags = set(http_json(f"{base}/data/plugin/histograms/tags")[run])
        assert {"weights/layer_0", "gradients/layer_2", "activations/layer_1"} <= histogram_tags
        histogram = http_json(query(base, "/data/plugin/histograms/histograms", run=run, tag="weights/layer_0"))
        assert [step for _, step, _ in histogram] == [1, 3]
        buckets = histogram[0][2]
        assert sum(count for _, _, count in buckets) == pytest.approx(784 * 32)

        # Images: the digit grids and confusion matrices of validation and test, served as PNG.
        image_tags = set(http_json(f"{base}/data/plugin/images/tags")[run])
        assert {"val/predictions", "val/confusion_matrix", "test/predictions", "test/confusion_matrix"} <= image_tags
        images = query(base, "/data/plugin/images/images", run=run, tag="test/confusion_matrix", sample="0")
        (entry,) = http_json(images)
        png = http(f"{base}/data/plugin/images/individualImage?{entry['query']}")
        assert png.startswith(b"\x89PNG")

        # HParams: the run's hyperparameters against its final val/acc and test/acc.
        experiment = http_json(f"{base}/data/plugin/hparams/experiment", {"experimentName": ""})
        hparam_names = {info["name"] for info in experiment["hparamInfos"]}
        assert {"activation", "hidden_sizes", "optimizer", "optimizer.lr", "batch_size"} <= hparam_names
        metric_tags = {info["name"]["tag"] for info in experiment["metricInfos"]}
        assert {"val/acc", "test/acc"} <= metric_tags
        groups = http_json(
            f"{base}/data/plugin/hparams/session_groups",
            {
                "experimentName": "",
                "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
                "colParams": [],
                "startIndex": 0,
                "sliceSize": 10,
            },
        )
        (group,) = groups["sessionGroups"]
        assert group["hparams"]["activation"] == "relu" and group["hparams"]["hidden_sizes"] == "[32, 32]"
        final = {metric["name"]["tag"]: metric["value"] for metric in group["metricValues"]}
        assert final["test/acc"] == pytest.approx(test_acc[0][2])
        assert 0.0 <= final["val/acc"] <= 1.0
