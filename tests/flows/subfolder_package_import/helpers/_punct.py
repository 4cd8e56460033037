EXCLAIM = "!!"
