"""Unit tests for wordcount.count (run: python3 -m unittest discover -s tests)."""

import os
import sys
import unittest

sys.path.insert(0, os.environ.get("WORDCOUNT_LIB", os.path.join(os.path.dirname(__file__), "..", "app")))

from wordcount import count  # noqa: E402


class CountTest(unittest.TestCase):
    def test_empty(self):
        self.assertEqual(count(""), (0, 0, 0))

    def test_words_and_lines(self):
        self.assertEqual(count("one two\nthree\n"), (2, 3, 14))

    def test_whitespace_runs(self):
        self.assertEqual(count("  a \t b  \n\n"), (2, 2, 11))

    def test_no_trailing_newline(self):
        self.assertEqual(count("last line"), (0, 2, 9))


if __name__ == "__main__":
    unittest.main()
