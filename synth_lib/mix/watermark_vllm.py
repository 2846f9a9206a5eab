"""The green-list watermark as a vLLM v1 custom logits processor, switched on per request.

    from vllm import LLM, SamplingParams
    llm = LLM(model, logits_processors=[vllm_processor_class()])
    llm.generate(prompts, SamplingParams(extra_args={REQUEST_ARG: spec.key_id}))

The processor reads its key from SYNTH_WATERMARK_KEY in the engine process; a request
opts in by naming that key's id, and a request naming another id is refused, so a
client can never watermark with a key it did not mean. The per-request function is
plain torch (tested on CPU); only the class needs vLLM, so it is built on demand.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from synth_lib.mix.watermark import WatermarkSpec, spec_from_env

REQUEST_ARG = "synth_watermark"


def request_processor(spec: WatermarkSpec) -> Callable:
    """`(prompt_ids, output_ids, logits_row) -> logits_row` adding delta to the green logits;
    the context is the last tokens of prompt + output, as in the transformers processor."""
    import torch

    def apply(prompt_ids: Sequence[int], output_ids: Sequence[int], logits):
        context = [*prompt_ids, *output_ids][-spec.context_width :]
        mask = torch.from_numpy(spec.green_mask(context, logits.shape[-1]))
        return logits + mask.to(device=logits.device, dtype=logits.dtype) * spec.delta

    return apply


def vllm_processor_class() -> type:
    """The `AdapterLogitsProcessor` subclass to pass to `vllm.LLM(logits_processors=[...])`."""
    from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

    class GreenListVllmProcessor(AdapterLogitsProcessor):
        def __init__(self, vllm_config, device, is_pin_memory):
            super().__init__(vllm_config, device, is_pin_memory)
            self.spec = spec_from_env()

        @classmethod
        def validate_params(cls, params) -> None:
            wanted = (params.extra_args or {}).get(REQUEST_ARG)
            if wanted is not None and wanted != spec_from_env().key_id:
                raise ValueError(f"{REQUEST_ARG}={wanted!r} is not the engine's watermark key")

        def is_argmax_invariant(self) -> bool:
            return False

        def new_req_logits_processor(self, params):
            if (params.extra_args or {}).get(REQUEST_ARG) != self.spec.key_id:
                return None
            return request_processor(self.spec)

    return GreenListVllmProcessor
