"""The demo's Gradio page: upload, model and options on the left; before/after slider, facts and the download
on the right. Uploads are ``gr.File`` so the model reads the file's own bytes (EXIF orientation, alpha,
16 bits and the ICC profile survive, as with ``binsr upscale``; ``gr.Image`` would re-encode them)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import gradio as gr

from binsr.demo.runner import MAX_INPUT_PIXELS, DemoRunner
from binsr.errors import BinsrError

TITLE = "binsr: 1-bit diffusion super-resolution on your CPU"
# PROGRESS: the waiting indicator is drawn on the small facts box only. A headless browser renders in
# software, and a spinner over the large image slider kept a core busy during each request, which slowed
# the model beside it (256x256 at x4: 2.0-2.6 s with it, 1.1-1.7 s without, on 2 cores).


class QuietBlocks(gr.Blocks):
    """gr.Blocks whose malformed requests (a crafted API call: wrong types, too few inputs, a path never
    uploaded) are refused with one line in the server's log and in the answer, instead of a traceback."""

    async def preprocess_data(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().preprocess_data(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as err:  # noqa: BLE001 - Gradio's own validation of a request's inputs
            detail = str(err).strip().splitlines()[0] if str(err).strip() else ""
            print(f"binsr demo: refused a malformed request ({type(err).__name__}: {detail})", flush=True)
            raise gr.Error(f"malformed request: {type(err).__name__}: {detail}", print_exception=False) from None


def build_app(runner: DemoRunner) -> gr.Blocks:
    names = runner.model_names()
    with QuietBlocks(title="binsr demo") as app:
        gr.Markdown(f"# {TITLE}\nUpload a low-resolution image (up to {MAX_INPUT_PIXELS} pixels). Models are "
                    "binsr's shipped 1-bit models, or a `.safetensors` model file of your own.")
        with gr.Row():
            with gr.Column(scale=1):
                image = gr.File(label="Low-resolution image", file_types=["image"], elem_id="lr-upload")
                preview = gr.Image(label="Input", interactive=False, height=200, elem_id="lr-preview")
                model = gr.Dropdown(names, value=names[0] if names else None, label="Model", elem_id="model")
                model_file = gr.File(label="…or a model file (.safetensors)", file_types=[".safetensors"],
                                     elem_id="model-file")
                steps = gr.Number(label="DDIM steps (BI-DiffSR models; 0: the model file's own)", value=0,
                                  precision=0, minimum=0,
                                  visible=bool(names) and runner.takes_steps(names[0]), elem_id="steps")
                with gr.Row():
                    seed = gr.Number(label="Seed", value=0, precision=0, minimum=0, elem_id="seed")
                    tile = gr.Number(label="Tile (output pixels; 0: automatic)", value=0, precision=0, minimum=0,
                                     elem_id="tile")
                    outscale = gr.Number(label="Output scale (0: the model's)", value=0, minimum=0, elem_id="outscale")
                hr = gr.File(label="HR image (optional: PSNR/SSIM)", file_types=["image"], elem_id="hr-upload")
                button = gr.Button("Upscale", variant="primary", elem_id="run")
                gr.Examples([[str(runner.sample_input())]], inputs=[image], label="Sample photo (made LR)")
            with gr.Column(scale=2):
                compare = gr.ImageSlider(label="bicubic | binsr", type="filepath", format="png",
                                         elem_id="compare", max_height=720)
                facts = gr.Markdown(elem_id="facts")
                download = gr.File(label="Result (PNG: alpha and 16 bits kept)", elem_id="result-file")

        image.change(lambda path: path, inputs=image, outputs=preview)
        model.change(lambda name: gr.update(visible=runner.takes_steps(name)), inputs=model, outputs=steps)

        def run(image_path: Any, name: str, file: Any, steps_: Any, tile_: Any, seed_: Any, outscale_: Any,
                hr_path: Any) -> tuple[tuple[str, str], str, str]:
            start = time.perf_counter()
            try:
                result = runner.upscale(image_path, name, file, _integer(steps_) or None, _integer(tile_) or None,
                                        _integer(seed_) or 0, float(outscale_) if outscale_ else None, hr_path)
            except BinsrError as err:
                raise gr.Error(public_message(str(err), image_path, file, hr_path), print_exception=False) from None
            except Exception as err:  # noqa: BLE001 - one line in the page, never a traceback
                detail = str(err).strip().splitlines()[0] if str(err).strip() else ""
                raise gr.Error(public_message(f"{type(err).__name__}: {detail}", image_path, file, hr_path),
                               print_exception=False) from None
            print(f"binsr demo: {result.result.name} in {time.perf_counter() - start:.2f} s (model {result.seconds:.2f} s)",
                  flush=True)  # the server's log: what a request cost before Gradio and the browser
            return (str(result.bicubic), str(result.result)), result.facts, str(result.result)

        button.click(run, inputs=[image, model, model_file, steps, tile, seed, outscale, hr],
                     outputs=[compare, facts, download], concurrency_limit=1,
                     show_progress="minimal", show_progress_on=[facts])  # see PROGRESS below
    return app


_SERVER_FOLDER = re.compile(r"(?:[A-Za-z]:)?[/\\]\S*?binsr-demo-[^/\\\s]*[/\\](?:[^/\\\s:]+[/\\])*")


def public_message(message: str, *uploads: Any) -> str:
    """``message`` as the browser may see it: each uploaded file by the name it was uploaded under, never
    the server's folders (``…/binsr-demo-*/uploads/<sha256>/``)."""
    for upload in uploads:
        if isinstance(upload, (str, Path)) and str(upload):
            message = message.replace(str(upload), Path(upload).name)
    return _SERVER_FOLDER.sub("", message)


def _integer(value: Any) -> int | None:
    return None if value is None or value == "" else int(value)
