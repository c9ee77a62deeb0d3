"""Written and generated texts for the loop evaluation set (``loops.jsonl``).

Each generator returns ``(kind, text)`` pairs. Loops imitate what degenerate models
produce: a punctuation-only line drawn hundreds of times, a verse and chorus sung again
and again with one word swapped, a table of contents restarting with new numbers, a
refrain repeated across paragraphs with small edits, counters that tick on for ever.
Clean texts are the look-alikes a loop detector must leave alone: numbered lists, code
with repeated lines, tables, songs with one repeated chorus, ASCII drawings and rules.

The texts are fixed by the seed, so rebuilding the set gives the same file.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

__all__ = ["loops", "clean"]

Item = tuple[str, str]

INTROS = [
    "Sure! Here it is:\n\n",
    "Here is what you asked for.\n\n",
    "Of course. ",
    "",
    "Great question! Let me draw it for you.\n",
    "Below is the result:\n",
]

# --------------------------------------------------------------------------- loops

ART_LINES = [
    "|  |  |  |  |",
    "/\\/\\/\\/\\/\\/\\",
    "| | | | | | | |",
    "\\__/\\__/\\__/",
    "|_|_|_|_|_|",
    "*   *   *   *",
    "~~~~~~~~~~~~",
    "+--+--+--+--+",
    "(  )  (  )  (  )",
    "//////////////",
    "||  ||  ||  ||",
    ". . . . . . .",
    "=-=-=-=-=-=-=",
    "#   #   #   #",
    "<><><><><><>",
    "|    |    |",
]

ART_HEADS = [
    "   /\\\n  /  \\\n /    \\\n/______\\\n",
    "  _____\n |     |\n |  o  |\n |_____|\n",
    "   *\n  ***\n *****\n*******\n",
    " /\\_/\\\n( o.o )\n > ^ <\n",
    "",
]

SUBJECTS = ["a tree", "a castle", "a cat", "a rocket", "a bridge", "a fence", "rain", "a ladder"]


def wordless(rng: random.Random) -> Iterator[Item]:
    """One line of bars, slashes and spaces drawn until the token limit."""
    for i in range(24):
        line = ART_LINES[i % len(ART_LINES)]
        head = ART_HEADS[i % len(ART_HEADS)]
        subject = SUBJECTS[i % len(SUBJECTS)]
        n = rng.randrange(60, 260)
        body = "\n".join([line] * n)
        cut = rng.randrange(0, len(line))  # the token limit stops mid-line
        text = f"{rng.choice(INTROS)}Here is an ASCII drawing of {subject}:\n\n{head}{body}\n{line[:cut]}"
        yield "wordless", text
    for mark, n in [("!", 400), (".", 500), ("?!", 220), ("-", 600), ("*", 300), (" :)", 180)]:
        prose = rng.choice(
            ["That is the best news I have heard all week", "Thanks so much for asking", "Wow"]
        )
        yield "wordless", prose + mark * n


VERSES = [
    (
        "I walked along the {w} at night,\nThe stars were shining cold and bright,\n"
        "I thought of you and all we knew,\nAnd every road that led me through.",
        ["river", "highway", "shoreline", "railway", "mountain", "harbor", "meadow", "canyon"],
    ),
    (
        "The {w} is calling me back home,\nNo matter where I choose to roam,\n"
        "The wind will carry every song,\nTo places where I still belong.",
        ["ocean", "valley", "city", "forest", "desert", "island", "prairie", "hillside"],
    ),
    (
        "Every {w} I wake and start again,\nI count the hours, I count the rain,\n"
        "I write your name upon the glass,\nAnd wait for one more day to pass.",
        ["morning", "evening", "Sunday", "winter", "summer", "midnight", "season", "autumn"],
    ),
]
CHORUSES = [
    "Oh, sing it loud, sing it clear,\nThe road is long but home is near,\n"
    "Hold my hand and don't let go,\nWe'll find the way, I know, I know.",
    "And we dance, dance, under the light,\nWe dance until the end of the night,\n"
    "Nothing can stop us, nothing can break,\nThe promise that we're going to make.",
    "So take me back to where we started,\nBack to the day we never parted,\n"
    "Take me back, take me home,\nI don't want to be alone.",
]


def verses(rng: random.Random) -> Iterator[Item]:
    """A verse and chorus sung five to nine times, one word swapped each time."""
    for i in range(18):
        verse, words = VERSES[i % len(VERSES)]
        chorus = CHORUSES[(i // 3) % len(CHORUSES)]
        times = 5 + i % 5
        parts = [f"{rng.choice(['Title: ', 'Song: ', ''])}Home Again\n"]
        for k in range(times):
            label = f"Verse {k + 1}:\n" if i % 2 else ""
            parts.append(label + verse.format(w=words[k % len(words)]))
            parts.append(("Chorus:\n" if i % 2 else "") + chorus)
        yield "near_periodic_verse", "\n\n".join(parts)


TOC_SECTIONS = [
    ["Introduction", "Background", "Methods", "Results", "Discussion"],
    ["Getting Started", "Installation", "Configuration", "Basic Usage", "Troubleshooting"],
    ["The Early Years", "A New Beginning", "The Storm", "Homecoming"],
    ["Overview", "Market Analysis", "Competitive Landscape", "Financial Plan", "Risks"],
    ["What Is Machine Learning", "Supervised Learning", "Unsupervised Learning", "Evaluation"],
]


def tocs(rng: random.Random) -> Iterator[Item]:
    """A table of contents whose sections restart with new numbers."""
    for i in range(16):
        sections = TOC_SECTIONS[i % len(TOC_SECTIONS)]
        style = i % 4
        rows = []
        n = rng.randrange(28, 70)
        for k in range(n):
            title = sections[k % len(sections)]
            if style == 0:
                rows.append(f"{k + 1}. {title}")
            elif style == 1:
                rows.append(f"Chapter {k + 1}: {title}")
            elif style == 2:
                rows.append(
                    f"{k // len(sections) + 1}.{k % len(sections) + 1} {title} .......... {3 + 4 * k}"
                )
            else:
                rows.append(f"Section {k + 1} - {title} (page {2 + 5 * k})")
        head = rng.choice(["Table of Contents\n\n", "Contents:\n", "Here is the outline:\n\n"])
        yield "near_periodic_toc", head + "\n".join(rows)


REFRAIN_PARAS = [
    (
        "Every {a} I think about the sea. The waves are calling me back home, and I know "
        "that I cannot stay away for long. The salt in the air reminds me of my childhood.",
        ["morning", "evening", "night", "afternoon", "weekend", "winter", "summer"],
    ),
    (
        "The key to success is {a}. Without it, even the best plans fall apart, and the "
        "team loses its way. Leaders who understand this build stronger organizations.",
        ["communication", "patience", "discipline", "planning", "trust", "focus", "consistency"],
    ),
    (
        "In conclusion, {a} is an important topic that deserves careful attention. By "
        "understanding it better, we can make more informed decisions in the future.",
        [
            "climate change",
            "economic growth",
            "public health",
            "education",
            "technology",
            "urban planning",
            "water policy",
        ],
    ),
    (
        "She opened the {a} and looked outside. The street was empty, the lamps were "
        "flickering, and somewhere far away a dog was barking at the moon.",
        ["window", "door", "curtain", "shutter", "gate", "blinds", "hatch"],
    ),
]


def refrains(rng: random.Random) -> Iterator[Item]:
    """A paragraph repeated with a word or two edited each time."""
    for i in range(16):
        para, words = REFRAIN_PARAS[i % len(REFRAIN_PARAS)]
        times = rng.randrange(5, 10)
        out = []
        for k in range(times):
            text = para.format(a=words[k % len(words)])
            if k % 3 == 2:  # an occasional extra edit, as real loops drift
                text = text.replace("the ", "the whole ", 1)
            out.append(text)
        sep = "\n\n" if i % 2 else " "
        yield "near_periodic_refrain", rng.choice(INTROS) + sep.join(out)


ORDINALS = [
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
    "eleventh",
    "twelfth",
    "thirteenth",
    "fourteenth",
    "fifteenth",
    "sixteenth",
    "seventeenth",
    "eighteenth",
    "nineteenth",
    "twentieth",
    "twenty-first",
    "twenty-second",
    "twenty-third",
    "twenty-fourth",
    "twenty-fifth",
]


def counters(rng: random.Random) -> Iterator[Item]:
    """Templates that tick a number or an ordinal on and on."""
    for i in range(14):
        n = rng.randrange(15, 40)
        style = i % 7
        if style == 0:
            lines = [
                f"    # Initialize the weight of the {ORDINALS[k % 25]} layer\n"
                f"    {ORDINALS[k % 25].replace('-', '_')}_layer_weight = 0.0"
                for k in range(n)
            ]
            text = "```python\ndef init_weights():\n" + "\n".join(lines)
        elif style == 1:
            lines = [f"    if k == {k}:\n        return min(a, b)" for k in range(n)]
            text = "Here is the function:\n\ndef kth(a, b, k):\n" + "\n".join(lines)
        elif style == 2:
            lines = [
                f"Day {k + 1}: Wake up at 7am, go for a run, eat breakfast, work on the project, "
                "have dinner and go to bed early."
                for k in range(n)
            ]
            text = "Here is your 30-day plan:\n" + "\n".join(lines)
        elif style == 3:
            lines = [
                f"Step {k + 1}: Repeat the previous step until the mixture is smooth."
                for k in range(n)
            ]
            text = "Step 1: Mix the flour and the sugar.\n" + "\n".join(lines)
        elif style == 4:
            lines = [
                f"The probability of rolling a {k % 6 + 1} on the first die and a {k // 6 + 1} on the "
                "second die is 1/6 * 1/6 = 1/36, so we add it to the total again."
                for k in range(n)
            ]
            text = " ".join(lines)
        elif style == 5:
            lines = [
                f"{k + 1}. The Rhine River has provided a natural border between the Roman Empire "
                f"and the {['Franks', 'Saxons', 'Goths', 'Vandals', 'Alemanni', 'Frisians'][k % 6]}."
                for k in range(n)
            ]
            text = "The Rhine has influenced Western Europe in these ways:\n" + "\n".join(lines)
        else:
            lines = [
                f"What about when the number is {3 + 2 * k}? When a number is divided by "
                f"{3 + 2 * k}, the remainder is 0, because the number is a multiple of itself."
                for k in range(n)
            ]
            text = "When a number is divided by 10, the remainder is 4. " + " ".join(lines)
        yield "near_periodic_counter", text


EXACT = [
    "I like the morning. ",
    "The answer is 42. ",
    "Please let me know if you have any other questions. ",
    "x = x + 1\n",
    "and then ",
    "We need to consider the fact that ",
    "print('hello')\n",
    "Thank you! ",
]


def exact(rng: random.Random) -> Iterator[Item]:
    """Exact repeats, the kind the detector always caught, kept so a change is visible."""
    for unit in EXACT:
        n = rng.randrange(6, 60)
        yield "exact", rng.choice(INTROS) + "Let me explain. " + unit * n


def loops(seed: int = 14) -> list[Item]:
    rng = random.Random(seed)
    gens: list[Callable[[random.Random], Iterator[Item]]] = [
        wordless,
        verses,
        tocs,
        refrains,
        counters,
        exact,
    ]
    return [item for g in gens for item in g(rng)]


# --------------------------------------------------------------------------- clean

RECIPE_STEPS = [
    "Preheat the oven to 180 C and grease a round cake tin.",
    "Whisk the eggs and sugar until pale and fluffy, about five minutes.",
    "Fold in the flour and baking powder with a spatula.",
    "Melt the butter and stir it in with the vanilla extract.",
    "Pour the batter into the tin and smooth the top.",
    "Bake for 35 minutes, until a skewer comes out clean.",
    "Leave the cake to cool in the tin for ten minutes.",
    "Turn it out onto a wire rack and let it cool completely.",
    "Beat the cream cheese with icing sugar for the frosting.",
    "Spread the frosting over the top and decorate with berries.",
]
TIPS = [
    ("Drink water", "Keep a bottle on your desk and refill it twice a day."),
    ("Sleep well", "Go to bed at the same time every night, even on weekends."),
    ("Move often", "Stand up and stretch for two minutes every hour."),
    ("Eat vegetables", "Fill half of your plate with vegetables at lunch and dinner."),
    ("Limit screens", "Put your phone in another room an hour before bed."),
    ("Get sunlight", "Spend at least fifteen minutes outside in the morning."),
    ("Breathe", "Try box breathing when you feel stressed: four counts in, hold, out, hold."),
    ("Plan meals", "Cook two large batches on Sunday to avoid takeaway during the week."),
    ("Read", "Keep a paperback in your bag for waiting rooms and commutes."),
    ("Call a friend", "Social contact is as good for your health as exercise."),
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
ACTIVITIES = [
    "Upper-body strength, 45 minutes: bench press, rows, shoulder press.",
    "Easy run, 5 km at a conversational pace.",
    "Lower-body strength, 45 minutes: squats, lunges, deadlifts.",
    "Rest day: a 20-minute walk and some stretching.",
    "Intervals: 6 x 400 m fast with 90 seconds of walking in between.",
    "Yoga or mobility work, 30 minutes.",
    "Long run, 10-12 km, slower than race pace.",
]


def lists(rng: random.Random) -> Iterator[Item]:
    """Numbered and bulleted lists whose items share a prefix but not their content."""
    for _ in range(5):
        k = rng.randrange(6, len(RECIPE_STEPS) + 1)
        steps = "\n".join(f"{n + 1}. {s}" for n, s in enumerate(RECIPE_STEPS[:k]))
        yield "list", f"Here is a simple sponge cake recipe:\n\n{steps}\n\nEnjoy!"
    for i in range(5):
        picked = rng.sample(TIPS, rng.randrange(6, len(TIPS) + 1))
        fmt = ["{n}. **{t}**: {d}", "- {t}: {d}", "Tip {n}: {t}. {d}"][i % 3]
        body = "\n".join(fmt.format(n=n + 1, t=t, d=d) for n, (t, d) in enumerate(picked))
        yield "list", f"Here are some habits that help:\n\n{body}"
    for _ in range(3):
        body = "\n".join(
            f"- {d}: {a}" for d, a in zip(DAYS, rng.sample(ACTIVITIES, 7), strict=True)
        )
        yield "list", f"A balanced training week:\n\n{body}\n\nAdjust the distances to your level."
    # A long numbered list with a shared sentence frame, as good answers have.
    countries = [
        ("France", "Paris", "French"),
        ("Germany", "Berlin", "German"),
        ("Italy", "Rome", "Italian"),
        ("Spain", "Madrid", "Spanish"),
        ("Portugal", "Lisbon", "Portuguese"),
        ("Poland", "Warsaw", "Polish"),
        ("Greece", "Athens", "Greek"),
        ("Sweden", "Stockholm", "Swedish"),
        ("Norway", "Oslo", "Norwegian"),
        ("Finland", "Helsinki", "Finnish"),
        ("Hungary", "Budapest", "Hungarian"),
        ("Czechia", "Prague", "Czech"),
    ]
    for _ in range(3):
        picked = rng.sample(countries, rng.randrange(8, 13))
        body = "\n".join(
            f"{n + 1}. {c}: the capital is {cap} and the official language is {lang}."
            for n, (c, cap, lang) in enumerate(picked)
        )
        yield "list", f"Capitals and languages:\n{body}"


CODE_SNIPPETS = [
    """```python
import pandas as pd

df = pd.read_csv("sales.csv")
north = df[df["region"] == "north"]["revenue"].sum()
south = df[df["region"] == "south"]["revenue"].sum()
east = df[df["region"] == "east"]["revenue"].sum()
west = df[df["region"] == "west"]["revenue"].sum()
print(north, south, east, west)
```""",
    """```c
switch (op) {
    case '+': result = a + b; break;
    case '-': result = a - b; break;
    case '*': result = a * b; break;
    case '/': result = a / b; break;
    case '%': result = a % b; break;
    default: printf("unknown operator\\n"); return 1;
}
```""",
    """```python
def test_add():
    assert add(1, 2) == 3

def test_add_negative():
    assert add(-1, -2) == -3

def test_add_zero():
    assert add(0, 0) == 0

def test_add_large():
    assert add(10**12, 1) == 10**12 + 1

def test_add_floats():
    assert add(0.5, 0.25) == 0.75
```""",
    """```html
<ul class="menu">
  <li><a href="/">Home</a></li>
  <li><a href="/about">About us</a></li>
  <li><a href="/products">Products</a></li>
  <li><a href="/pricing">Pricing</a></li>
  <li><a href="/blog">Blog</a></li>
  <li><a href="/careers">Careers</a></li>
  <li><a href="/contact">Contact</a></li>
</ul>
```""",
    """```sql
INSERT INTO employees (id, name, role, salary) VALUES (1, 'Ann Lee', 'engineer', 91000);
INSERT INTO employees (id, name, role, salary) VALUES (2, 'Bo Chen', 'designer', 78000);
INSERT INTO employees (id, name, role, salary) VALUES (3, 'Cy Diaz', 'manager', 105000);
INSERT INTO employees (id, name, role, salary) VALUES (4, 'Di Evans', 'analyst', 69000);
INSERT INTO employees (id, name, role, salary) VALUES (5, 'Ed Fox', 'engineer', 88000);
INSERT INTO employees (id, name, role, salary) VALUES (6, 'Flo Gray', 'support', 52000);
```""",
    """```css
.btn-primary { color: #fff; background-color: #0d6efd; border-color: #0d6efd; }
.btn-secondary { color: #fff; background-color: #6c757d; border-color: #6c757d; }
.btn-success { color: #fff; background-color: #198754; border-color: #198754; }
.btn-danger { color: #fff; background-color: #dc3545; border-color: #dc3545; }
.btn-warning { color: #000; background-color: #ffc107; border-color: #ffc107; }
.btn-info { color: #000; background-color: #0dcaf0; border-color: #0dcaf0; }
```""",
    """```python
import os
import sys
import json
import time
import logging
import argparse
from pathlib import Path
from typing import Any
```""",
    """```javascript
const total = items.reduce((sum, item) => sum + item.price * item.qty, 0);
console.log("items:", items.length);
console.log("total:", total);
console.log("average:", total / items.length);
console.log("max:", Math.max(...items.map((i) => i.price)));
console.log("min:", Math.min(...items.map((i) => i.price)));
```""",
    """```python
matrix = [
    [1, 0, 0, 0],
    [0, 1, 0, 0],
    [0, 0, 1, 0],
    [0, 0, 0, 1],
]
```""",
    """```yaml
services:
  web:
    image: nginx:1.25
    ports: ["80:80"]
    restart: always
  api:
    image: myorg/api:2.3
    ports: ["8000:8000"]
    restart: always
  db:
    image: postgres:16
    ports: ["5432:5432"]
    restart: always
  cache:
    image: redis:7
    ports: ["6379:6379"]
    restart: always
```""",
    """```python
for i in range(1, 11):
    print(f"7 x {i} = {7 * i}")
```
Output:
```
7 x 1 = 7
7 x 2 = 14
7 x 3 = 21
7 x 4 = 28
7 x 5 = 35
7 x 6 = 42
7 x 7 = 49
7 x 8 = 56
7 x 9 = 63
7 x 10 = 70
```""",
    """```java
public class Point {
    private final int x;
    private final int y;
    private final int z;

    public int getX() { return x; }
    public int getY() { return y; }
    public int getZ() { return z; }
}
```""",
]


def code(rng: random.Random) -> Iterator[Item]:
    """Code with repeated lines: each line differs in the part that matters."""
    for snippet in CODE_SNIPPETS:
        yield (
            "code",
            rng.choice(["Here is the code:\n\n", "You can do it like this:\n", ""]) + snippet,
        )
    # A longer generated one: a lookup table with many similar lines.
    names = [
        "alpha",
        "beta",
        "gamma",
        "delta",
        "epsilon",
        "zeta",
        "eta",
        "theta",
        "iota",
        "kappa",
        "lambda",
        "mu",
        "nu",
        "xi",
        "omicron",
        "pi",
        "rho",
        "sigma",
        "tau",
    ]
    body = "\n".join(f'    "{n}": "{chr(0x3B1 + k)}",' for k, n in enumerate(names))
    yield "code", f"```python\nGREEK = {{\n{body}\n}}\n```"


def tables(rng: random.Random) -> Iterator[Item]:
    """Markdown, ASCII and CSV tables: the rows repeat their form, not their content."""
    people = [
        ("Ann", 31, "Oslo", "Chef"),
        ("Bob", 45, "Rome", "Pilot"),
        ("Cai", 28, "Lima", "Nurse"),
        ("Dee", 52, "Kyiv", "Judge"),
        ("Eli", 39, "Pune", "Baker"),
        ("Fay", 24, "Cork", "Coder"),
        ("Gus", 61, "Nice", "Mayor"),
        ("Hal", 33, "Bonn", "Actor"),
    ]
    for _ in range(4):
        rows = rng.sample(people, rng.randrange(5, 9))
        md = "| Name | Age | City | Job |\n| --- | --- | --- | --- |\n" + "\n".join(
            f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows
        )
        yield "table", "Here is the table:\n\n" + md
    for _ in range(3):
        n = rng.randrange(8, 16)
        rows = "\n".join(
            f"| {2010 + k} | {rng.randrange(100, 999)} | {rng.randrange(10, 99)}.{rng.randrange(10)} | "
            f"{rng.randrange(1, 9)}.{rng.randrange(10)}% |"
            for k in range(n)
        )
        yield (
            "table",
            f"| Year | Units | Revenue (M$) | Growth |\n|------|-------|--------------|--------|\n{rows}",
        )
    grid = "\n".join(", ".join(f"({a},{b})" for b in range(1, 7)) for a in range(1, 7))
    yield (
        "table",
        f"When rolling two dice, the possible outcomes are:\n\n{grid}\n\nThere are 36 outcomes.",
    )
    ascii_rows = "\n".join(
        f"| {name:<8}| {score:>5} |\n+---------+-------+"
        for name, score in [
            ("Alice", 93),
            ("Bob", 87),
            ("Carol", 78),
            ("Dave", 91),
            ("Erin", 66),
            ("Frank", 85),
        ]
    )
    yield "table", f"+---------+-------+\n| Name    | Score |\n+=========+=======+\n{ascii_rows}"
    csv = "date,open,high,low,close\n" + "\n".join(
        f"2022-{m:02d}-01,{150 + m * 2}.{rng.randrange(10, 99)},{153 + m * 2}.{rng.randrange(10, 99)},"
        f"{148 + m * 2}.{rng.randrange(10, 99)},{151 + m * 2}.{rng.randrange(10, 99)}"
        for m in range(1, 13)
    )
    yield "table", f"```\n{csv}\n```"
    months = "\n".join(
        f'  {{"month": "2022-{m:02d}", "highest": {160 + m}, "lowest": {150 + m}}},'
        for m in range(1, 13)
    )
    yield "table", f"```json\n[\n{months}\n]\n```"
    wide_rule = "|" + "---|" * 14
    header = "|" + "|".join(f" c{k} " for k in range(14)) + "|"
    body = "\n".join(
        "|" + "|".join(f" {rng.randrange(10)} " for _ in range(14)) + "|" for _ in range(4)
    )
    yield "table", f"{header}\n{wide_rule}\n{body}"


SONGS = [
    (
        [
            "The city lights are fading out,\nThe last train's leaving town,\nI hear the voices in the crowd,\n"
            "But I don't turn around.",
            "We said goodbye on Sunday,\nThe coffee getting cold,\nYou kept the keys, I kept the songs,\n"
            "The stories never told.",
            "Now every street remembers,\nThe way we used to walk,\nThe benches in the park still wait,\n"
            "For us to sit and talk.",
        ],
        "And I will find my way back home,\nThrough the rain and through the snow,\nI will find my way back home,\n"
        "To the only place I know.",
    ),
    (
        [
            "Woke up early, sun is high,\nNot a cloud up in the sky,\nGrab your jacket, grab your shoes,\n"
            "We've got nothing left to lose.",
            "Down the hill and past the mill,\nEverybody's standing still,\nMusic playing on the square,\n"
            "Summer magic in the air.",
            "When the evening starts to fall,\nWe'll be dancing through it all,\nAnd tomorrow, who can say,\n"
            "We'll just do it all again someday.",
        ],
        "Hey, hey, it's a holiday,\nThrow your worries all away,\nHey, hey, come out and play,\n"
        "It's a brand new holiday.",
    ),
]


def songs(rng: random.Random) -> Iterator[Item]:
    """Songs with one chorus repeated between different verses, and poems with a refrain."""
    for i in range(6):
        verses_, chorus = SONGS[i % len(SONGS)]
        parts = []
        for k, v in enumerate(verses_):
            parts.append(f"Verse {k + 1}:\n{v}" if i % 2 else v)
            parts.append(f"Chorus:\n{chorus}" if i % 2 else chorus)
        if i >= 2:
            parts.append("Bridge:\nAnd if the night is long,\nI'll hum our little song.")
            parts.append(chorus)
        yield "song", "\n\n".join(parts)
    villanelle = (
        "Do not go gently into the dark,\nThe morning waits beyond the hill;\nKeep burning, little stubborn spark.\n\n"
        "The old men argue in the park,\nThey say the clocks are standing still;\nDo not go gently into the dark.\n\n"
        "The sailors leave without an ark,\nThey trust the sea against their will;\nKeep burning, little stubborn spark.\n\n"
        "The painters lose their final mark,\nThe poets put away the quill;\nDo not go gently into the dark.\n\n"
        "The dogs have long forgot to bark,\nThe wind is cold, the house is chill;\nKeep burning, little stubborn spark.\n\n"
        "So light the lamp and hear the lark,\nAnd drink the water from the rill;\nDo not go gently into the dark,\n"
        "Keep burning, little stubborn spark."
    )
    yield "song", villanelle
    yield (
        "song",
        (
            "Row, row, row your boat,\nGently down the stream,\nMerrily, merrily, merrily, merrily,\n"
            "Life is but a dream.\n\nSing it as a round: the second voice starts when the first reaches the second line."
        ),
    )
    yield (
        "song",
        (
            "Happy birthday to you,\nHappy birthday to you,\nHappy birthday, dear Maria,\nHappy birthday to you!"
        ),
    )


ASCII_ART = [
    " /\\_/\\\n( o.o )\n > ^ <\n",
    "    _____\n   /     \\\n  /_______\\\n  |  []   |\n  |   _   |\n  |__| |__|\n",
    "+--------+      +--------+\n| Client | ---> | Server |\n+--------+      +--------+\n"
    "                     |\n                     v\n               +----------+\n               | Database |\n"
    "               +----------+\n",
    "   *\n  ***\n *****\n*******\n   |\n",
    " X | O | X\n---+---+---\n O | X | O\n---+---+---\n X | O | X\n",
    "+---+---+---+---+---+---+---+---+\n| r | n | b | q | k | b | n | r |\n"
    "+---+---+---+---+---+---+---+---+\n| p | p | p | p | p | p | p | p |\n"
    "+---+---+---+---+---+---+---+---+\n|   |   |   |   |   |   |   |   |\n"
    "+---+---+---+---+---+---+---+---+\n|   |   |   |   |   |   |   |   |\n"
    "+---+---+---+---+---+---+---+---+\n|   |   |   |   |   |   |   |   |\n"
    "+---+---+---+---+---+---+---+---+\n|   |   |   |   |   |   |   |   |\n"
    "+---+---+---+---+---+---+---+---+\n| P | P | P | P | P | P | P | P |\n"
    "+---+---+---+---+---+---+---+---+\n| R | N | B | Q | K | B | N | R |\n"
    "+---+---+---+---+---+---+---+---+\n",
]


def art(rng: random.Random) -> Iterator[Item]:
    """ASCII drawings, rules and separators: punctuation, but not loops."""
    for drawing in ASCII_ART:
        yield "ascii_art", "Here you go:\n\n```\n" + drawing + "```"
    yield "ascii_art", "Results\n" + "=" * 80 + "\nAll 42 tests passed.\n" + "-" * 80 + "\nDone."
    yield "ascii_art", "Progress: [" + "#" * 30 + "-" * 20 + "] 60%"
    yield "ascii_art", "Title\n=====\n\nSome text here.\n\n* * *\n\nMore text after the break."
    yield "ascii_art", "1/6 + 1/6 + 1/6 + 1/6 + 1/6 = 5/6, so the probability is 5/6."
    yield "ascii_art", "That comes to roughly 69,000,000,000,000 kWh, or 69 trillion kWh."
    yield "ascii_art", "Fill in the blanks:\n1. ______\n2. ______\n3. ______\n4. ______\n5. ______"


def clean(seed: int = 15) -> list[Item]:
    rng = random.Random(seed)
    gens: list[Callable[[random.Random], Iterator[Item]]] = [lists, code, tables, songs, art]
    return [item for g in gens for item in g(rng)]
