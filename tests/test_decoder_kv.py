"""Cross-attention keys and values computed once give whisper's own decoder logits."""

from __future__ import annotations

import torch

from listenkit.engine.decoder_kv import cross_kv, decoder_logits, run_decoder_blocks


def test_cached_projections_give_whisper_decoder_logits(tiny_model, speech_clips):
    texts, audio = zip(*speech_clips[:2], strict=True)
    with torch.inference_mode():
        features = tiny_model.encode(tiny_model.log_mel(list(audio)))
        rows = [[*tiny_model.sot_sequence, *tiny_model.text_tokens(t)] for t in texts]
        width = min(len(r) for r in rows)
        tokens = torch.tensor([rows[0][:width], rows[1][:width], rows[1][:width]])
        owner = torch.tensor([0, 1, 1])  # item 1 has two scoring rows
        expected = tiny_model.module.decoder(tokens, features[owner])
        kv = cross_kv(tiny_model.module.decoder, features, owner)
        got = decoder_logits(tiny_model.module.decoder, tokens, features[owner], kv)
    assert len(kv) == 2 * tiny_model.decoder_layers
    assert all(v.shape[0] == 3 for v in kv.values())
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-5)


def test_restarting_at_a_block_equals_the_full_pass(tiny_model, speech_clips):
    decoder = tiny_model.module.decoder
    with torch.inference_mode():
        features = tiny_model.encode(tiny_model.log_mel(speech_clips[0][1]))
        tokens = torch.tensor([[*tiny_model.sot_sequence, *tiny_model.text_tokens("hello")]])
        kv = cross_kv(decoder, features)
        entering: dict[int, torch.Tensor] = {}
        handle = decoder.blocks[2].register_forward_pre_hook(
            lambda _m, args: entering.__setitem__(3, args[0].clone())
        )
        full = decoder_logits(decoder, tokens, features, kv)
        handle.remove()
        restarted = run_decoder_blocks(decoder, entering[3], features, kv, first=3)
    torch.testing.assert_close(restarted, full, atol=0, rtol=0)
