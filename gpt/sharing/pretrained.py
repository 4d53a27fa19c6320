"""GPT: the lecture's model that saves, loads and shares itself, through huggingface_hub's PyTorchModelHubMixin.

    model = GPT.from_pretrained("weights/default")   # a weights folder, or a Hub repo id like "user/repo"
    model.save_pretrained("weights/copy")
    model.push_to_hub("user/my-shakespeare-gpt")

The format is this project's own (gpt.sharing.weights): model.safetensors + config.json, read strictly, never a pickle.
save_pretrained and push_to_hub write the same card as `python -m gpt.hub push` (card.py): a model loaded from a
run folder carries that run's log (metrics.jsonl), so its card has the metric, a sample and the loss curve.
"""

from __future__ import annotations

import threading
from pathlib import Path

from huggingface_hub import ModelCard, PyTorchModelHubMixin

from gpt.sharing import weights
from gpt.sharing.card import CURVE_FILE, has_curve, loss_curve_png, model_card
from gpt.training.log import read_log
from gpt.config import CONFIG_FILE, read_config
from gpt.errors import WeightsError
from gpt.sharing.export_folder import try_repo_files
from gpt.memory import check_loadable
from gpt.model import GPTLanguageModel
from gpt.generation.precision import inference_model, serving_dtype


class GPT(
    GPTLanguageModel,
    PyTorchModelHubMixin,
    library_name="gpt-from-scratch",
    tags=["gpt-from-scratch", "character-level", "text-generation"],
    pipeline_tag="text-generation",
    license="mit",
):
    """GPTLanguageModel with from_pretrained, save_pretrained and push_to_hub."""

    log: dict | None = None  # the run that made these weights (its metrics.jsonl), when loaded from its folder

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *, revision: str | None = None,
                        token: str | None = None, cache_dir: str | Path | None = None, force_download: bool = False,
                        local_files_only: bool = False, map_location: str = "cpu", **kwargs) -> "GPT":
        """Load from a weights folder or a Hub repo id. Raises WeightsError saying what is wrong.

        For a repo id: cache_dir, force_download and local_files_only (only the cache, never the network) as in
        huggingface_hub's snapshot_download."""
        folder = weights.locate(pretrained_model_name_or_path, revision=revision, token=token, cache_dir=cache_dir,
                                force_download=force_download, local_files_only=local_files_only)
        config, _ = read_config(folder)  # a clear error before the mixin builds anything from a foreign config
        check_loadable(config, map_location, folder / CONFIG_FILE, WeightsError)  # and before it allocates
        return super().from_pretrained(folder, map_location=map_location, **kwargs)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, map_location: str = "cpu", **unused) -> "GPT":
        model = cls(*read_config(model_id))  # our own strict reading of config.json
        model.load_state_dict(weights.read_state_dict(Path(model_id), model), strict=True)
        model.log = read_log(model_id)
        return model.to(map_location).eval()

    def save_pretrained(self, save_directory: str | Path, *, model_card_kwargs: dict | None = None, **kwargs):
        """The mixin's save_pretrained, with this project's card naming the folder (or, pushing, the repo); with
        the export extra installed, the folder is also export_folder.py's, for transformers and ONNX (so is a push)."""
        exported, _ = try_repo_files(self)
        card = {"name": str(save_directory), "exported": bool(exported), **(model_card_kwargs or {})}
        result = super().save_pretrained(save_directory, model_card_kwargs=card, **kwargs)
        for name, data in exported.items():  # GPT-2's model.safetensors and config.json replace ours: both load
            weights.atomic_write(Path(save_directory) / name, lambda tmp, data=data: tmp.write_bytes(data))
        return result

    def push_to_hub(self, repo_id: str, *, model_card_kwargs: dict | None = None, **kwargs) -> str:
        """The mixin's push_to_hub (create the repo, upload in one commit), with the card naming repo_id."""
        return super().push_to_hub(repo_id, model_card_kwargs={"name": repo_id, **(model_card_kwargs or {})},
                                   **kwargs)

    def generate_model_card(self, name: str = "GPT", exported: bool = False, **unused) -> ModelCard:
        return ModelCard(model_card(self.config, self.vocab, self.log, name, exported))

    def _save_pretrained(self, save_directory: Path) -> None:
        weights.save_weights(self, save_directory)  # the mixin then writes the card (generate_model_card)
        if has_curve(self.log):  # the picture the card shows, as gpt.sharing.hub push uploads it
            png = loss_curve_png(self.log)
            weights.atomic_write(save_directory / CURVE_FILE, lambda tmp: tmp.write_bytes(png))


_loaded: dict[tuple[str, int, bool], GPTLanguageModel] = {}
_loaded_lock = threading.Lock()


def load_cached(folder: str | Path, *, inference: bool = False) -> GPTLanguageModel:
    """GPT.from_pretrained, remembered until model.safetensors changes (a run saving a better model).

    inference=True gives the copy a server generates with (precision.serving_dtype: int8 where bf16 is native).
    """
    folder = Path(folder)
    try:
        key = (str(folder.resolve()), (folder / weights.MODEL_FILE).stat().st_mtime_ns, inference)
    except OSError:
        raise WeightsError(f"no weights at {folder}") from None
    with _loaded_lock:
        if key not in _loaded:
            model = GPT.from_pretrained(folder)
            for old in [k for k in _loaded if k[0] == key[0] and k[1] != key[1]] + list(_loaded)[:-5]:
                _loaded.pop(old, None)  # keep a handful of models, the latest version of each
            _loaded[key] = inference_model(model, serving_dtype(model)) if inference else model
        return _loaded[key]
