"""Model building, loading and saving in the Hugging Face layout."""
