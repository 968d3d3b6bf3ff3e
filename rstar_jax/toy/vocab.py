"""Word lists and sentence templates of the toy arithmetic domain.

Every template is a `str.format` pattern over these fields:
  w: the person the sentence is about (the story's current focus), n: a newly introduced person,
  g: a bystander (gives or takes things; never counted), o: plural object noun, o2: another object,
  box / boxes: container noun (singular / plural), a, b, k: the numbers of the sentence.
Numbers are always written as digits, so every literal of the intended computation appears in the text.
Templates in one tuple are interchangeable wordings of the same operation.
"""

from __future__ import annotations

# Short names whose lower-case forms are clean Python identifiers (not keywords or builtins).
NAMES = (
    "Ava", "Ben", "Cara", "Dev", "Eli", "Finn", "Gia", "Hana", "Ivy", "Jack", "Kai", "Lena",
    "Mia", "Noah", "Omar", "Pia", "Raj", "Sara", "Tom", "Uma", "Vic", "Zoe", "Leo", "Nina",
)  # fmt: skip

OBJECTS = (
    "marbles", "stickers", "cards", "apples", "pens", "shells", "coins", "stamps", "beads", "cookies",
    "books", "toys", "rocks", "eggs", "buttons", "flowers", "candies", "balloons", "pencils", "ribbons",
)  # fmt: skip

CONTAINERS = (("box", "boxes"), ("bag", "bags"), ("jar", "jars"), ("pack", "packs"), ("crate", "crates"),
              ("basket", "baskets"), ("tray", "trays"), ("tin", "tins"))  # fmt: skip

# Opening sentence (no operation): w has a.
START = ("{w} has {a} {o}.", "{w} starts with {a} {o}.", "{w} owns {a} {o}.", "There are {a} {o} in {w}'s room.")

# Opening sentence with one multiplication: w has a * b.
START_GROUPS = (
    "{w} has {a} {boxes} of {b} {o}.",
    "{w} starts with {a} {boxes} holding {b} {o} each.",
    "{w} owns {a} {boxes} with {b} {o} in each.",
)

# w + a
GAIN = (
    "{w} buys {a} more {o}.",
    "{w} finds {a} more {o}.",
    "{g} gives {w} {a} {o}.",
    "{w} gets {a} more {o} from {g}.",
    "Then {w} wins {a} {o}.",
)

# w - a
LOSE = (
    "{w} gives {a} {o} to {g}.",
    "{w} loses {a} {o}.",
    "{w} sells {a} of the {o}.",
    "{g} takes {a} {o} from {w}.",
    "Then {w} uses {a} {o}.",
)

# w * k
SCALE = (
    "Later, {w} has {k} times as many {o}.",
    "By the weekend, {w} has {k} times as many {o}.",
    "Then {w}'s {o} grow {k}-fold.",
)

# w // k (exact)
SHARE = (
    "{w} splits the {o} into {k} equal {boxes} and keeps one.",
    "{w} divides the {o} into {k} equal groups and keeps one.",
    "{w} keeps one of {k} equal shares of the {o}.",
)

# (template, product variable, product comment, update comment) for w + a * b and w - a * b.
GAIN_GROUPS = (
    ("{w} buys {a} {boxes} of {b} {o}.", "bought", "{o} in {a} {boxes} of {b}", "{w} after buying"),
    ("{w} gets {a} {boxes} holding {b} {o} each.", "received", "{o} in {a} {boxes} of {b}", "{w} after getting"),
    ("For {a} days, {w} collects {b} {o} a day.", "collected", "{b} {o} a day for {a} days", "{w} after collecting"),
    ("{g} gives {w} {a} {boxes} with {b} {o} in each.", "received", "{o} in {a} {boxes} of {b}", "{w} after getting"),
)
LOSE_GROUPS = (
    ("{w} sells {a} {boxes} of {b} {o}.", "sold", "{o} in {a} {boxes} of {b}", "{w} after selling"),
    ("{w} gives away {a} {boxes} with {b} {o} in each.", "given", "{o} in {a} {boxes} of {b}", "{w} after giving"),
    ("For {a} days, {w} uses {b} {o} a day.", "used", "{b} {o} a day for {a} days", "{w} after using"),
)

# New person n from the focus w. Direct wordings state n first; inverse ones state w first.
MORE = ("{n} has {a} more {o} than {w}.", "{n} owns {a} more {o} than {w} does.", "{w} has {a} fewer {o} than {n}.")
FEWER = ("{n} has {a} fewer {o} than {w}.", "{n} owns {a} fewer {o} than {w} does.", "{w} has {a} more {o} than {n}.")
TIMES = ("{n} has {k} times as many {o} as {w}.", "{n} owns {k} times as many {o} as {w} does.")
PART = ("{w} has {k} times as many {o} as {n}.", "{w} owns {k} times as many {o} as {n} does.")

# Questions about the focus w (no operation).
ASK_NOW = (
    "How many {o} does {w} have now?",
    "How many {o} does {w} have in the end?",
    "How many {o} does {w} end up with?",
    "In the end, how many {o} does {w} have?",
)
# Questions combining two people w and n (one operation): sum, or larger minus smaller.
ASK_TOGETHER = (
    "How many {o} do {w} and {n} have together?",
    "How many {o} do {w} and {n} have in total?",
    "Together, how many {o} do {w} and {n} have?",
)
ASK_MORE = ("How many more {o} does {w} have than {n}?", "How many fewer {o} does {n} have than {w}?")

# Distractors: numbers the computation must ignore. x is a bystander, w the first person of the story.
DISTRACT = (
    "{x} has {d} {o}.",
    "{x} has {d} {o2}.",
    "{w} also has {d} {o2}.",
    "{w} is {d} years old.",
    "Each {box} costs {d} dollars.",
    "{x} gives {w} {d} {o2}.",
    "{w} spends {d} minutes on this.",
    "{x} lives {d} blocks away.",
)
