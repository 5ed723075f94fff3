This is not a FileStorage.
Just some text.
