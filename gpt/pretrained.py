"""GPT: the lecture's model that saves, loads and shares itself, through huggingface_hub's PyTorchModelHubMixin.

    model = GPT.from_pretrained("weights/default")   # a weights folder, or a Hub repo id like "user/repo"
    model.save_pretrained("weights/copy")
    model.push_to_hub("user/my-shakespeare-gpt")

The format is this project's own (gpt.weights): model.safetensors + config.json, read strictly, never a pickle.
"""

from __future__ import annotations

import threading
from pathlib import Path

from huggingface_hub import PyTorchModelHubMixin

from gpt import weights
from gpt.config import CONFIG_FILE, read_config
from gpt.errors import WeightsError
from gpt.memory import check_loadable
from gpt.model import GPTLanguageModel
from gpt.sampling import inference_model


class GPT(
    GPTLanguageModel,
    PyTorchModelHubMixin,
    library_name="gpt-from-scratch",
    tags=["gpt-from-scratch", "character-level", "text-generation"],
    pipeline_tag="text-generation",
    license="mit",
):
    """GPTLanguageModel with from_pretrained, save_pretrained and push_to_hub."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *, revision: str | None = None,
                        token: str | None = None, map_location: str = "cpu", **kwargs) -> "GPT":
        """Load from a weights folder or a Hub repo id. Raises WeightsError saying what is wrong."""
        folder = weights.locate(pretrained_model_name_or_path, revision=revision, token=token)
        config, _ = read_config(folder)  # a clear error before the mixin builds anything from a foreign config
        check_loadable(config, map_location, folder / CONFIG_FILE, WeightsError)  # and before it allocates
        return super().from_pretrained(folder, map_location=map_location, **kwargs)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, map_location: str = "cpu", **unused) -> "GPT":
        model = cls(*read_config(model_id))  # our own strict reading of config.json
        model.load_state_dict(weights.read_state_dict(Path(model_id), model), strict=True)
        return model.to(map_location).eval()

    def _save_pretrained(self, save_directory: Path) -> None:
        weights.save_weights(self, save_directory)


_loaded: dict[tuple[str, int, bool], GPTLanguageModel] = {}
_loaded_lock = threading.Lock()


def load_cached(folder: str | Path, *, inference: bool = False) -> GPTLanguageModel:
    """GPT.from_pretrained, remembered until model.safetensors changes (a run saving a better model).

    inference=True gives the copy to generate with (gpt.sampling.inference_model: int8 weights where faster).
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
            _loaded[key] = inference_model(model) if inference else model
        return _loaded[key]
