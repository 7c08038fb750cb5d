"""The nodes of CRA's semantic structure graph of a question-answer pair (torch-free, shared with pipeline/).

The order is the row order of a language prototype (G = 8 rows) and of the SVO table's node columns.
"""

GRAPH_NODES = (
    "question",
    "question_type",
    "subject",
    "verbs",
    "objects",
    "answer",
    "answer_verbs",
    "answer_objects",
)
