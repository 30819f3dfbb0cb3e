"""``moee-studio PHOTO.jpg`` opens the photo as the portrait (a user's first try; it used to reach the project
reader and fail with a UTF-8 error); a ``.moee`` file stays a project."""

from __future__ import annotations

from studio.app import parse_args


def test_an_image_as_the_argument_is_the_portrait() -> None:
    args = parse_args(["/photos/hallo_4.jpg"])
    assert args.portrait == "/photos/hallo_4.jpg" and args.project is None
    project = parse_args(["talk.moee"])
    assert project.project == "talk.moee" and project.portrait is None
    both = parse_args(["talk.MOEE", "--portrait", "face.png"])
    assert both.project == "talk.MOEE" and both.portrait == "face.png"
