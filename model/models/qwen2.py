"""Qwen2 is the Llama decoder with q/k/v biases, which its DenseConfig states; no code of its own."""

from model.models.llama import LlamaForCausalLM


class Qwen2ForCausalLM(LlamaForCausalLM):
    pass
