"""Surface features of responses: real-looking positives and negatives for each rule."""

from __future__ import annotations

import pytest

from features.store.text_features import (
    FEATURE_NAMES,
    TextFeatures,
    asks_follow_up,
    ends_with_goodbye,
    is_refusal,
    text_features,
    text_features_frame,
    uses_list,
    uses_markdown,
)

# ---------------------------------------------------------------------------------------
# lengths
# ---------------------------------------------------------------------------------------


def test_lengths_count_code_points_and_whitespace_tokens():
    feats = text_features("Paris is the capital of France.\n\nIt has ~2.1M people. 🇫🇷")
    assert feats.length_chars == len("Paris is the capital of France.\n\nIt has ~2.1M people. 🇫🇷")
    assert feats.length_words == 11


def test_empty_response_has_zero_length_and_no_traits():
    assert text_features("") == TextFeatures(0, 0, False, False, False, False, False)


def test_whitespace_only_response():
    feats = text_features("   \n\t ")
    assert feats.length_words == 0
    assert not any([feats.ends_with_goodbye, feats.asks_follow_up, feats.is_refusal, feats.uses_list])


# ---------------------------------------------------------------------------------------
# goodbye
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "The capital of France is Paris. Have a great day!",
        "You can reset it from Settings > Security. Hope this helps, and take care!",
        "That should fix the import error.\n\nCheers,\nSam",
        "Glad I could help. Goodbye! 👋",
        "All done. Bye for now :)",
        "Happy to help with that. Take care of yourself!",
        "Let me know how the interview goes. Good luck and goodbye!",
        "That's the whole recipe. I hope you have a wonderful evening.",
        "Good-bye, and thanks for chatting.",
        "Enjoy the trip! See you next time.",
        "Thanks for the kind words! Have a nice weekend, Maria! 😊",
        "Take care! Let me know if anything else comes up.",
    ],
)
def test_goodbye_positive(text):
    assert ends_with_goodbye(text)
    assert text_features(text).ends_with_goodbye


@pytest.mark.parametrize(
    "text",
    [
        "The capital of France is Paris.",
        "In French, goodbye is 'au revoir'.",
        "In French, goodbye is au revoir.",
        "Say goodbye to slow builds: enable ccache and rebuild.",
        "The crowd cheers when the home team scores.",
        "Goodbye messages should be short. Keep them under 20 words. Use the person's name. Avoid jargon.",
        "Make sure you take care of the dog while I'm away.",
        "I see you are using Python 3.11, which supports this syntax.",
        "Bye is a common informal word, as is cheers.",
        "To exit the REPL, type:\n\n```python\nprint('bye')\nexit()\n```",
        "Have a great day! I mean it. Now, about your question: the answer is 42, and the reason is the "
        "definition of the function. It returns the product. Test it with two inputs.",
    ],
)
def test_goodbye_negative(text):
    assert not ends_with_goodbye(text)


# ---------------------------------------------------------------------------------------
# follow-up question
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Here is the SQL query you need. Would you like me to explain the JOIN?",
        "I converted the function to async. Do you want me to add tests as well?",
        "That covers the basics. Anything else?",
        "Done. Shall I translate it into Spanish too? 😊",
        "The flight takes about 7 hours. Is there anything else I can help with?",
        "Those are the three options.\n\nWhich one would you prefer?",
        "I can also show the pandas version. Should I?",
        "Any further questions?",
    ],
)
def test_follow_up_positive(text):
    assert asks_follow_up(text)


@pytest.mark.parametrize(
    "text",
    [
        "Do you need the full path? If so, use os.path.abspath(). Otherwise a relative path works.",
        "Why does this happen? Because the cache is stale. Clear it and rerun.",
        "The answer is 42.",
        "Let me know if you have any other questions!",
        "Why not give it a try?",
        'The book you mean is "Who Moved My Cheese?"',
        "Use the ternary operator:\n\n```js\nconst x = ok ? a : b;\nconsole.log(x?\n```",
        "",
    ],
)
def test_follow_up_negative(text):
    assert not asks_follow_up(text)


# ---------------------------------------------------------------------------------------
# refusal
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "I'm sorry, but I can't help with that.",
        "I’m sorry, but I can’t assist with creating malware.",
        "I cannot help with requests to access someone else's account.",
        "As an AI, I am not able to provide medical diagnoses. Please see a doctor.",
        "As an AI language model, I don't have access to real-time stock prices.",
        "Sorry, I won't write that. It could be used to harass someone.",
        "I must decline this request.",
        "Unfortunately, I'm unable to share personal information about private individuals.",
        "I'm not able to provide instructions for making weapons.",
        "That request goes against my guidelines, so I can't continue.",
        "I'm sorry, but I can't.",
        "Sorry, I cannot do that request.",
        "I’m afraid I won’t be able to help with this one.",
    ],
)
def test_refusal_positive(text):
    assert is_refusal(text)


@pytest.mark.parametrize(
    "text",
    [
        "I can't believe how easy this is! Just run `pip install requests`.",
        "I can't help but notice the loop never terminates: `i` is never incremented.",
        "I cannot stress enough how important backups are. Here's a 3-2-1 plan.",
        "Sorry for the confusion earlier! Here is the corrected query.",
        "Sure! Here's a haiku about autumn leaves.",
        "I'd be happy to help with that. First, open the terminal.",
        "You can't use `await` outside an async function; wrap it in `asyncio.run()`.",
        "The server cannot help with caching; add Redis in front of it.",
        "Sorry, I can't find an attachment in your message. Could you paste the text instead?",
        "I'm sorry to hear about your loss. Here are some resources that might help.",
        "I won't go into every detail, but the short answer is yes.",
        # a limitation mentioned late in a helpful answer does not make it a refusal
        "Here is the estimate you asked for, based on the 2023 census and the growth rate since then. "
        + "The city grew about 1.2% a year, so today it has roughly 2.2 million people. " * 3
        + "I can't provide the exact figure, as it hasn't been published.",
    ],
)
def test_refusal_negative(text):
    assert not is_refusal(text)


# ---------------------------------------------------------------------------------------
# lists
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "You need:\n- flour\n- eggs\n- milk",
        "Steps:\n1. Open Settings\n2. Click Privacy\n3. Clear history",
        "Options:\n  * pandas\n  * polars",
        "Two ways:\n1) use a loop\n2) use a comprehension",
        "• Fast\n• Cheap",
    ],
)
def test_list_positive(text):
    assert uses_list(text)


@pytest.mark.parametrize(
    "text",
    [
        "Just use a list comprehension - it's faster.",
        "There are 3 steps. First open the file, then read it, then close it.",
        "- only one bullet here",
        "In 2020. sales rose.\nIn 2021 they fell.",
        "Here's the YAML:\n```yaml\nitems:\n  - a\n  - b\n  - c\n```",
        "The result is -1 when x < 0\n-2 otherwise",
    ],
)
def test_list_negative(text):
    assert not uses_list(text)


# ---------------------------------------------------------------------------------------
# markdown
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "## Installation\nRun the installer.",
        "This is **very** important.",
        "Use __init__ files? No: this is __bold text__ here.",
        "```python\nprint('hi')\n```",
        "| Name | Age |\n|------|-----|\n| Ann  | 31  |",
        "|:---|---:|",
        "Overview\n========\nText.",
    ],
)
def test_markdown_positive(text):
    assert uses_markdown(text)


@pytest.mark.parametrize(
    "text",
    [
        "Plain text answer without formatting.",
        "This is our #1 priority.",
        "C# and F# both run on .NET.",
        "Compute 2 * 3 * 4 = 24.",
        "Python's 2 ** 10 is 1024.",
        "Pipe it: cat file | grep foo",
        "Define __init__ and __repr__ in the class.",
        "Tags: #python #pandas",
    ],
)
def test_markdown_negative(text):
    assert not uses_markdown(text)


# ---------------------------------------------------------------------------------------
# frame
# ---------------------------------------------------------------------------------------


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    "text",
    [
        " " * 100_000 + "x",
        "|" + " " * 100_000,
        "word " * 50_000,
        "x\n" + "   \n" * 30_000,
        "a," * 50_000,
        "Take care" + " ," * 50_000,
        "**a " * 30_000,
        "😊 " * 50_000,
    ],
)
def test_long_adversarial_inputs_take_linear_time(text):
    # These took 30-90 s each with quadratic backtracking; linear scans take milliseconds.
    assert text_features(text).length_chars == len(text)


def test_frame_matches_single_calls_column_wise():
    responses = [
        "I'm sorry, but I can't help with that.",
        "## Steps\n1. Install\n2. Run\n\nWould you like more detail?",
        "Bye!",
    ]
    frame = text_features_frame(responses)
    assert tuple(frame) == FEATURE_NAMES
    assert all(len(col) == len(responses) for col in frame.values())
    for i, response in enumerate(responses):
        assert {name: frame[name][i] for name in FEATURE_NAMES} == text_features(response).as_dict()
    assert frame["is_refusal"] == [True, False, False]
    assert frame["uses_list"] == [False, True, False]
    assert frame["uses_markdown"] == [False, True, False]
    assert frame["asks_follow_up"] == [False, True, False]
    assert frame["ends_with_goodbye"] == [False, False, True]


def test_frame_of_nothing_has_empty_columns():
    assert text_features_frame([]) == {name: [] for name in FEATURE_NAMES}


def test_feature_names_are_the_dataclass_fields():
    assert FEATURE_NAMES == (
        "length_chars",
        "length_words",
        "ends_with_goodbye",
        "asks_follow_up",
        "is_refusal",
        "uses_list",
        "uses_markdown",
    )
