# The demo pool generator (tools/make_pool.py) in its tiny mode: a few training
# steps, base + 2 checkpoints in the build folder. The script reads every file
# it wrote back and checks it (config, tokenizer vocabulary, safetensors names,
# shapes and bytes, reference log-probs, task files); it exits non-zero if not.
# The committed pool under examples/demo/pool is not regenerated here.
add_test(NAME pool_generator_tiny
  COMMAND /usr/bin/python3 ${CMAKE_SOURCE_DIR}/tools/make_pool.py --tiny --out ${CMAKE_BINARY_DIR}/tiny-pool)
set_tests_properties(pool_generator_tiny PROPERTIES LABELS "pool" TIMEOUT 300)
