# make demo: set up, then train -> evaluate -> export -> verify the default experiment.
# make chaos: more kill points of the fault-injection tests, and more fuzzing examples, than make test tries.
# make test: set up with test extras, lint and format checks (ruff), then the test suite (two processes, one test file each at a time).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_DIR ?= runs/mnist_resnet

.PHONY: setup demo test chaos bench clean

$(BIN)/garden: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

setup: $(BIN)/garden

demo: setup
	$(BIN)/garden train mnist_resnet --run-dir $(RUN_DIR)
	$(BIN)/garden eval $(RUN_DIR) --split test
	$(BIN)/garden export $(RUN_DIR) --format saved_model --format tflite \
		--quantize none --quantize dynamic --quantize float16 --quantize int8 --quantize 16x8

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=25

# make chaos: the fault-injection and single-writer tests at many kill points (tests/test_faults.py), and the fuzzing tests at many examples.
chaos: setup
	GARDEN_CHAOS_POINTS=$${GARDEN_CHAOS_POINTS:-25} $(BIN)/python -m pytest -q -n 2 \
		tests/test_faults.py tests/test_single_writer.py tests/test_image_decoding.py tests/test_fuzz.py

clean:
	rm -rf $(VENV) runs
