#!/usr/bin/env bash
# Hostile input files (issue #15, class 6), through the CLI as a user runs it:
# a FIFO, a device, a folder or a link to one where a file is expected is one
# error line naming the file, exit 2, before anything is read (a FIFO with no
# writer would otherwise block the open forever: every command runs under a
# timeout, and a timeout fails the test); JSON of the wrong type names the file
# and the key; a config.json that claims another model and a text longer than
# the model's context are exit 2, not an allocation.
source "$(dirname "$0")/service_lib.sh"
demo=$KINTSUGI_SOURCE_DIR/examples/demo
base=$demo/pool/base

# expect_error CODE PATTERN CMD...: exit CODE within 60 s, one error line matching PATTERN,
# and no raw library text.
expect_error() {
  local code=$1 pattern=$2; shift 2
  local rc=0
  timeout 60 "$@" >"$work/out" 2>"$work/err" </dev/null || rc=$?
  [[ $rc != 124 ]] || fail "$*: hung (killed after 60 s)"
  [[ $rc == "$code" ]] || { cat "$work/err" >&2; fail "$* exited $rc, expected $code"; }
  local errors
  errors=$(grep -c "kintsugi: error:" "$work/err" || true)
  [[ $errors == 1 ]] || { cat "$work/err" >&2; fail "$*: expected one error line, got $errors"; }
  grep -q -- "$pattern" "$work/err" || { cat "$work/err" >&2; fail "$*: message does not match '$pattern'"; }
  if grep -qE "type_error|json.exception|check failed|out of memory|filesystem error" "$work/err"; then
    cat "$work/err" >&2; fail "$*: raw internal text"
  fi
}

mkfifo "$work/fifo"
ln -s /dev/zero "$work/zero"
ln -s "$work/fifo" "$work/link-to-fifo"
mkdir "$work/folder"

# 1. Single files: inspect, tokenize, merge, optimize, report, export.
for bad in fifo zero link-to-fifo; do
  expect_error 2 "$bad: the safetensors file is" "$KINTSUGI" inspect "$work/$bad"
  expect_error 2 "$bad: the tokenizer.json is" "$KINTSUGI" tokenize "$work/$bad" --input "$demo/tasks/add.search.jsonl"
  expect_error 2 "$bad: the input file is" "$KINTSUGI" tokenize "$base" --input "$work/$bad"
  expect_error 2 "$bad: the recipe is" "$KINTSUGI" merge "$work/$bad" --out "$work/merged"
  expect_error 2 "$bad: the job file is" "$KINTSUGI" optimize "$work/$bad"
  expect_error 2 "$bad: the state is" "$KINTSUGI" report "$work/$bad"
done
expect_error 2 "folder: the job file is a folder" "$KINTSUGI" optimize "$work/folder"
expect_error 2 "folder: the state is a folder" "$KINTSUGI" report "$work/folder"
expect_error 2 "null: the recipe is a character device" "$KINTSUGI" merge /dev/null --out "$work/merged"
[[ ! -e "$work/merged" ]] || fail "a refused merge left an output"

# 2. Files inside a model folder: config.json, the index, a shard, tokenizer files.
model_with() {  # model_with NAME FILE TARGET: a copy of the base model with FILE replaced by a link
  local dir=$work/$1; cp -r "$base" "$dir"; rm -f "$dir/$2"; ln -s "$3" "$dir/$2"; echo "$dir"
}
m=$(model_with m-config config.json /dev/zero)
expect_error 2 "m-config/config.json: the config.json is a character device" "$KINTSUGI" inspect "$m"
m=$(model_with m-shard model.safetensors "$work/fifo")
expect_error 2 "m-shard/model.safetensors: the safetensors file is a FIFO" "$KINTSUGI" inspect "$m"
m=$(model_with m-index model.safetensors.index.json /dev/zero)
expect_error 2 "m-index/model.safetensors.index.json: the model.safetensors.index.json is a character device" "$KINTSUGI" inspect "$m"
m=$(model_with m-tok tokenizer.json "$work/fifo")
expect_error 2 "m-tok/tokenizer.json: the tokenizer.json is a FIFO" "$KINTSUGI" tokenize "$m" --input "$demo/tasks/add.search.jsonl"
m=$(model_with m-tokcfg tokenizer_config.json "$work/folder")
expect_error 2 "m-tokcfg/tokenizer_config.json: the tokenizer_config.json is a folder" "$KINTSUGI" tokenize "$m" --input "$demo/tasks/add.search.jsonl"

# 3. Task files in a job.
job_with() {  # job_with OUT TASKFILE KIND [CHECKPOINT]: one task, one checkpoint
  /usr/bin/python3 - "$1" "$2" "$3" "${4:-$base}" <<'PY'
import json, sys
out, task, kind, ck = sys.argv[1:5]
t = {"name": "t", "file": task, "kind": kind, "split": "search"}
if kind == "generate": t.update(max_new_tokens=4, stop=["\n"])
json.dump({"pool": {"checkpoints": [ck]}, "tasks": [t],
           "search": {"method": "cmaes", "budget": 4, "seed": 1},
           "output": {"state": "state.h5"}}, open(out, "w"))
PY
}
job_with "$work/j-fifo.yaml" "$work/fifo" perplexity
expect_error 2 "fifo: the task file is a FIFO" "$KINTSUGI" eval "$work/j-fifo.yaml" --checkpoint "$base"
job_with "$work/j-zero.yaml" "$work/zero" perplexity
expect_error 2 "zero: the task file is a character device" "$KINTSUGI" eval "$work/j-zero.yaml" --checkpoint "$base"

# 4. JSON of the wrong type: the file and the key, no library text.
m=$work/m-types; cp -r "$base" "$m"
/usr/bin/python3 - "$m/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["hidden_act"] = 5; json.dump(c, open(sys.argv[1], "w"))
PY
echo '{"text": "12+3="}' >"$work/ppl.jsonl"
job_with "$work/j-types.yaml" "$work/ppl.jsonl" perplexity "$m"
expect_error 2 "m-types/config.json: key 'hidden_act' must be a string" "$KINTSUGI" eval "$work/j-types.yaml" --checkpoint "$m"
/usr/bin/python3 - "$m/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["hidden_act"] = "silu"; c["num_hidden_layers"] = "4"; json.dump(c, open(sys.argv[1], "w"))
PY
expect_error 2 "m-types/config.json: key 'num_hidden_layers' must be an integer" "$KINTSUGI" eval "$work/j-types.yaml" --checkpoint "$m"
m=$work/m-toktypes; cp -r "$base" "$m"
/usr/bin/python3 - "$m/tokenizer.json" <<'PY'
import json, sys
t = json.load(open(sys.argv[1])); t["pre_tokenizer"] = {"type": 12}; json.dump(t, open(sys.argv[1], "w"))
PY
expect_error 2 "m-toktypes/tokenizer.json: .*pre_tokenizer" "$KINTSUGI" tokenize "$m" --input "$demo/tasks/add.search.jsonl"

# 5. config.json claiming a far larger model: refused by tensor shape, before any allocation.
m=$work/m-huge; cp -r "$base" "$m"
/usr/bin/python3 - "$m/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["vocab_size"] = 2**31; c["intermediate_size"] = 2**30
json.dump(c, open(sys.argv[1], "w"))
PY
job_with "$work/j-huge.yaml" "$work/ppl.jsonl" perplexity "$m"
expect_error 2 "m-huge: tensor .*: shape .* but config.json implies" "$KINTSUGI" eval "$work/j-huge.yaml" --checkpoint "$m"

# 6. A text longer than the model's context (max_position_embeddings 256): exit 2, not out of memory.
/usr/bin/python3 -c 'import json; print(json.dumps({"text": "1" * 5000}))' >"$work/long.jsonl"
job_with "$work/j-long.yaml" "$work/long.jsonl" perplexity
expect_error 2 "long.jsonl: example 0: 5001 tokens, more than the model's max_position_embeddings (256)\|long.jsonl: example 0: [0-9]* tokens, more than the model's max_position_embeddings (256)" \
  "$KINTSUGI" eval "$work/j-long.yaml" --checkpoint "$base"
/usr/bin/python3 -c 'import json; print(json.dumps({"context": "1" * 400, "target": "2"}))' >"$work/longgen.jsonl"
job_with "$work/j-longgen.yaml" "$work/longgen.jsonl" generate
expect_error 2 "longgen.jsonl: example 0: [0-9]* tokens, more than the model's max_position_embeddings (256)" \
  "$KINTSUGI" eval "$work/j-longgen.yaml" --checkpoint "$base"

# 7. The same files as regular files still work (the check refuses only what it must).
ln -s "$work/ppl.jsonl" "$work/add-link.jsonl"
timeout 60 "$KINTSUGI" tokenize "$base" --input "$work/add-link.jsonl" >"$work/tok.out" || fail "tokenize through a link to a regular file failed"
[[ -s "$work/tok.out" ]] || fail "tokenize printed nothing"
echo "hostile inputs: all refused"
