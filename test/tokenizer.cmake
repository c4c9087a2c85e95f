# The tokenizer against Hugging Face's own (tools/hf-reference, run live): ids
# and decodes on the corpus for four real tokenizers and the demo pool's.
kintsugi_cli_test(NAME tokenizer_hf SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/e2e/tokenizer_hf.sh
  LABELS tokenizer)
