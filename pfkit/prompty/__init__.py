"""``.prompty`` files: ``Prompty.load(path)(question=...)`` (and ``await
AsyncPrompty.load(path)(...)``), runnable as flows too (``pfkit flow test --flow x.prompty``).
See :mod:`pfkit.prompty._model` for how ``model.configuration`` maps onto pfkit connections."""

from ._configs import AzureOpenAIModelConfiguration, OpenAIModelConfiguration
from ._file import PromptyFile, load_prompty_file
from ._prompty import AsyncPrompty, Prompty

__all__ = ["AsyncPrompty", "AzureOpenAIModelConfiguration", "OpenAIModelConfiguration",
           "Prompty", "PromptyFile", "load_prompty_file"]
