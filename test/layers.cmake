# The modules form layers (tools/module_layers.py, docs/architecture.md): an
# include that reaches a later module of the pipeline, i.e. a cycle, fails.
add_test(NAME module_layers COMMAND /usr/bin/python3 ${CMAKE_SOURCE_DIR}/tools/module_layers.py ${CMAKE_SOURCE_DIR})
set_tests_properties(module_layers PROPERTIES LABELS "layers")
