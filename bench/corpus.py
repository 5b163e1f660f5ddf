"""Deterministic input for the benchmark: a Zipf-like English-ish corpus.

Words come from a made-up vocabulary (a few real function words, then
syllable compounds) drawn with Zipf weights from `random.Random(seed)`,
so the same seed and size give the same bytes on every machine. A stamp
file next to the directory (`DIR.json`) remembers what it holds, so a
second run reuses it.
"""

import itertools
import json
import os
import random
import shutil

COMMON = ("the of and to a in is it you that he was for on are with as I "
          "his they be at one have this from or had by not word but what "
          "some we can out other were all there when up use your how said "
          "an each she which do their time if will way about many then "
          "them write would like so these her long make thing see him two "
          "has look more day could go come did number sound no most people "
          "my over know water than call first who may down side been now "
          "find").split()
ONSETS = ("b bl br c ch cl cr d dr f fl fr g gl gr h j k l m n p pl pr qu r "
          "s sc sh sl sm sn sp st str t th tr v w wh y z").split()
VOWELS = "a e i o u ai ea ee oa ou ie".split()
CODAS = ("", "", "", "n", "r", "s", "t", "nd", "ng", "st", "ck", "ll", "m")
VOCABULARY_SIZE = 40000
WORDS_PER_BLOCK = 100_000


def vocabulary(rng, size=VOCABULARY_SIZE):
    """Return `size` distinct words, most frequent first."""
    words = list(COMMON)
    seen = set(words)
    while len(words) < size:
        word = "".join(rng.choice(ONSETS) + rng.choice(VOWELS)
                       + rng.choice(CODAS)
                       for _ in range(rng.choice((1, 2, 2, 3, 3, 4))))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def _zipf_cumulative(size, exponent=1.05):
    """Return cumulative Zipf weights for ranks 1..size."""
    return list(itertools.accumulate(1.0 / (rank + 1.5) ** exponent
                                     for rank in range(size)))


def _lines(rng, words):
    """Cut `words` into lines of 4 to 18 words; some end a sentence."""
    out = []
    start = 0
    while start < len(words):
        end = start + rng.randint(4, 18)
        line = " ".join(words[start:end])
        if rng.random() < 0.3:
            line = line[:1].upper() + line[1:] + "."
        out.append(line)
        start = end
    return "\n".join(out) + "\n"


def make_corpus(directory, size_mb, num_files=8, seed=1):
    """Fill `directory` with `num_files` files of `size_mb` MB in all.

    Does nothing if the directory already holds that corpus. Returns the
    sorted list of file paths.
    """
    wanted = {"size_mb": size_mb, "num_files": num_files, "seed": seed,
              "version": 1}
    stamp = directory.rstrip(os.sep) + ".json"
    try:
        with open(stamp, encoding="utf-8") as file:
            if json.load(file) == wanted:
                return _files(directory)
    except (OSError, ValueError):
        pass
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    rng = random.Random(seed)
    vocab = vocabulary(rng)
    cumulative = _zipf_cumulative(len(vocab))
    per_file = max(1, int(size_mb * (1 << 20)) // num_files)
    for index in range(num_files):
        _write_file(os.path.join(directory, f"input{index:03d}.txt"),
                    per_file, rng, vocab, cumulative)
    with open(stamp, "w", encoding="utf-8") as file:
        json.dump(wanted, file)
    return _files(directory)


def _write_file(path, size, rng, vocab, cumulative):
    """Write about `size` bytes of whole lines of Zipf-drawn words."""
    with open(path, "w", encoding="ascii", newline="\n") as file:
        written = 0
        while written < size:
            text = _lines(rng, rng.choices(vocab, cum_weights=cumulative,
                                           k=WORDS_PER_BLOCK))
            if written + len(text) > size:
                cut = text.rfind("\n", 0, size - written) + 1
                text = text[:cut] if cut > 0 else text[:text.find("\n") + 1]
            file.write(text)
            written += len(text)


def _files(directory):
    """Return the sorted paths of the corpus files in `directory`."""
    return sorted(os.path.join(directory, name)
                  for name in os.listdir(directory))


def make_tiny_inputs(directory):
    """Write two small files for the latency jobs; return the directory."""
    os.makedirs(directory, exist_ok=True)
    rng = random.Random(7)
    vocab = vocabulary(rng, 500)
    for index in range(2):
        with open(os.path.join(directory, f"tiny{index}.txt"), "w",
                  encoding="ascii") as file:
            file.write(_lines(rng, rng.choices(vocab, k=200)))
    return directory


def make_one_line_inputs(directory, count):
    """Write `count` one-line files for the scheduling job."""
    if os.path.isdir(directory) and len(os.listdir(directory)) == count:
        return directory
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    for index in range(count):
        with open(os.path.join(directory, f"line{index:05d}"), "w",
                  encoding="ascii") as file:
            file.write(f"line {index:05d}\tof the scheduling job\n")
    return directory
