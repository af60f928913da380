"""Local fakes of the outside services deskbell talks to."""
